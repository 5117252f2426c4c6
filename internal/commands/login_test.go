package commands

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"paas/internal/paas"
	"paas/internal/signin"
)

// TestLogin prints a link of the real sign-in service, which signs in the
// key's user once.
func TestLogin(t *testing.T) {
	svc, err := signin.New(signin.Config{BaseURL: "https://paas.example.com", Key: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(nil, "1.2.3", LoginCommands(svc))
	run := func(id paas.Identity, args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := d.RunCommand(context.Background(), id, args, strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errOut := run(alice, "login")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || lines[0] != "-----> Sign-in link for alice (valid 60 s, once):" ||
		!strings.HasPrefix(lines[1], "https://paas.example.com/auth/link?token=") {
		t.Fatalf("login: %d\n%s\n%s", code, out, errOut)
	}
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, httptest.NewRequest("GET", strings.TrimPrefix(lines[1], "https://paas.example.com"), nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Sign in as alice") {
		t.Fatalf("the link's page: %d\n%s", rec.Code, rec.Body)
	}

	code, out, _ = run(root, "login", "--format", "json")
	var j struct{ URL, User string }
	if code != 0 || json.Unmarshal([]byte(out), &j) != nil || j.User != "root" || !strings.Contains(j.URL, "/auth/link?token=") {
		t.Fatalf("login --format json: %d %s", code, out)
	}
	if code, out, _ := run(alice, "login", "--help"); code != 0 || !strings.Contains(out, "valid 60 s, once") {
		t.Fatalf("login --help: %d %s", code, out)
	}
	none := NewDispatcher(nil, "1.2.3", LoginCommands(nil))
	var errb strings.Builder
	if code := none.RunCommand(context.Background(), alice, []string{"login"}, strings.NewReader(""), &strings.Builder{}, &errb); code != ExitError || !strings.Contains(errb.String(), "serves no dashboard") {
		t.Fatalf("login without a dashboard: %d %s", code, errb.String())
	}
}
