package router

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"paas/router/contract"
	"strings"
	"testing"
	"time"
)

func adminRequest(t *testing.T, method, url, token, body string) *http.Request {
	t.Helper()
	req := newRequest(t, method, url, contract.AdminHost, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

func TestAdminNeedsToken(t *testing.T) {
	app := namedBackend(t, "app")
	src := &fakeSource{table: Table{Routes: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends(app)}}}}
	tests := []struct {
		name       string
		configured string
		sent       string
		want       int
	}{
		{"no token configured", "", "secret", http.StatusNotFound},
		{"no token sent", "secret", "", http.StatusNotFound},
		{"wrong token", "secret", "secreT", http.StatusNotFound},
		{"prefix of the token", "secret", "secre", http.StatusNotFound},
		{"right token", "secret", "secret", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, s := startRouter(t, src, Options{AdminToken: tt.configured})
			got := do(t, s.Client(), adminRequest(t, "GET", s.URL+"/backends", tt.sent, ""))
			if got.status != tt.want {
				t.Fatalf("status %d, want %d (%s)", got.status, tt.want, got.body)
			}
			if tt.want == http.StatusOK {
				var st contract.Status
				if err := json.Unmarshal([]byte(got.body), &st); err != nil {
					t.Fatal(err)
				}
				if len(st.Backends) != 1 || st.Backends[0].Addr != app || st.Backends[0].App != "hello" || !st.Backends[0].Routed {
					t.Fatalf("backends %+v, want %s routed for hello", st.Backends, app)
				}
			}
		})
	}
}

// TestDrain follows a backend that leaves the table while a request to it is
// still running: it is reported with its request in flight until the
// response is complete, and then no more.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		fmt.Fprint(w, "old")
	}))
	fresh := namedBackend(t, "new")
	src := &fakeSource{table: Table{Routes: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends(slow)}}}}
	r, s := startRouter(t, src, Options{AdminToken: "tok"})

	done := make(chan response, 1)
	go func() {
		resp, err := s.Client().Do(newRequest(t, "GET", s.URL+"/", "hello.example.test", nil))
		if err != nil {
			done <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		done <- response{status: resp.StatusCode, body: string(body)}
	}()
	<-started

	src.set(Table{Routes: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends(fresh)}}}, nil)
	st := refresh(t, s, "tok")
	if !hasBackend(st, slow, false, 1) || !hasBackend(st, fresh, true, 0) {
		t.Fatalf("after the swap: %+v, want %s retired with 1 in flight and %s routed", st.Backends, slow, fresh)
	}
	if got := do(t, s.Client(), newRequest(t, "GET", s.URL+"/", "hello.example.test", nil)); got.body != "new" {
		t.Fatalf("a new request went to %q, want the new backend", got.body)
	}
	close(release)
	if got := <-done; got.status != http.StatusOK || got.body != "old" {
		t.Fatalf("the request in flight during the swap: status %d %s", got.status, got.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st = r.Status()
		if !hasAddr(st, slow) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old backend is still reported after its request finished: %+v", st.Backends)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func refresh(t *testing.T, s *testServer, token string) contract.Status {
	t.Helper()
	got := do(t, s.Client(), adminRequest(t, "POST", s.URL+"/refresh", token, ""))
	if got.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", got.status, got.body)
	}
	var st contract.Status
	if err := json.Unmarshal([]byte(got.body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func hasAddr(st contract.Status, addr string) bool {
	for _, b := range st.Backends {
		if b.Addr == addr {
			return true
		}
	}
	return false
}

func hasBackend(st contract.Status, addr string, routed bool, inflight int64) bool {
	for _, b := range st.Backends {
		if b.Addr == addr {
			return b.Routed == routed && b.Inflight == inflight
		}
	}
	return false
}

func TestCheck(t *testing.T) {
	ok := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "hello.example.test" {
			http.Error(w, "wrong host "+r.Host, http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "ready at "+r.URL.Path)
	}))
	hang := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	tests := []struct {
		name     string
		req      contract.CheckRequest
		wantCode int
		wantBody string
		wantErr  string
	}{
		{"answers", contract.CheckRequest{Addr: ok, Path: "/health", Host: "hello.example.test"}, 200, "ready at /health", ""},
		{"path without slash", contract.CheckRequest{Addr: ok, Path: "up", Host: "hello.example.test"}, 200, "ready at /up", ""},
		{"refused", contract.CheckRequest{Addr: deadAddr(t)}, 0, "", "connection refused"},
		{"too slow", contract.CheckRequest{Addr: hang, Timeout: 200}, 0, "", "no answer within 200ms"},
		{"bad address", contract.CheckRequest{Addr: "nowhere"}, 0, "", "bad address"},
	}
	_, s := startRouter(t, &fakeSource{}, Options{AdminToken: "tok"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := json.Marshal(tt.req)
			got := do(t, s.Client(), adminRequest(t, "POST", s.URL+"/check", "tok", string(b)))
			var res contract.CheckResult
			if err := json.Unmarshal([]byte(got.body), &res); err != nil {
				t.Fatalf("%d %s: %v", got.status, got.body, err)
			}
			if res.Status != tt.wantCode || res.Body != tt.wantBody || !strings.Contains(res.Error, tt.wantErr) || (tt.wantErr == "" && res.Error != "") {
				t.Fatalf("got %+v, want status %d body %q error containing %q", res, tt.wantCode, tt.wantBody, tt.wantErr)
			}
		})
	}
}
