package auth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/auth"
	"paas/internal/paas"
)

type fakeKeyStore struct {
	keys []*paas.SSHKey
	err  error
}

func (f *fakeKeyStore) Keys() ([]*paas.SSHKey, error) { return f.keys, f.err }

func newKey(t *testing.T) (gossh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key, auth.Normalize(key)
}

// writeFile writes data to path and moves its mtime away from the previous
// write's, so a change is visible even on file systems with coarse timestamps.
func writeFile(t *testing.T, path, data string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestIdentify(t *testing.T) {
	rootKey, rootLine := newKey(t)
	opsKey, opsLine := newKey(t)
	anonKey, anonLine := newKey(t)
	badCommentKey, badCommentLine := newKey(t)
	userKey, userLine := newKey(t)
	bothKey, bothLine := newKey(t)
	unknownKey, _ := newKey(t)

	adminFile := filepath.Join(t.TempDir(), "admin_keys")
	writeFile(t, adminFile, strings.Join([]string{
		"# administrators",
		"",
		rootLine + " root@example.com",
		"this line is garbage",
		"ssh-ed25519 AAAAnotbase64!!!",
		`no-pty,command="/bin/false" ` + opsLine + " ops",
		"   " + anonLine + "   ",
		badCommentLine + " bad name with spaces",
		bothLine + " boss",
	}, "\n")+"\n", time.Unix(1700000000, 0))

	store := &fakeKeyStore{keys: []*paas.SSHKey{
		{Name: "alice", Fingerprint: gossh.FingerprintSHA256(userKey), Key: userLine},
		// A key in both places is an admin: the admin file wins.
		{Name: "mallory", Fingerprint: gossh.FingerprintSHA256(bothKey), Key: bothLine},
	}}
	k := auth.NewKeys(adminFile, store)

	tests := []struct {
		name   string
		key    gossh.PublicKey
		wantID paas.Identity
		wantOK bool
	}{
		{"admin named by comment", rootKey, paas.Identity{Name: "root@example.com", Admin: true}, true},
		{"admin with options", opsKey, paas.Identity{Name: "ops", Admin: true}, true},
		{"admin without comment", anonKey, paas.Identity{Name: "admin", Admin: true}, true},
		{"admin with an invalid comment", badCommentKey, paas.Identity{Name: "admin", Admin: true}, true},
		{"store key", userKey, paas.Identity{Name: "alice"}, true},
		{"admin file wins over store", bothKey, paas.Identity{Name: "boss", Admin: true}, true},
		{"unknown key", unknownKey, paas.Identity{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok, err := k.Identify(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || id.Name != tc.wantID.Name || id.Admin != tc.wantID.Admin {
				t.Fatalf("Identify = %+v, %v; want %+v, %v", id, ok, tc.wantID, tc.wantOK)
			}
		})
	}
}

func TestIdentifyStoreError(t *testing.T) {
	key, _ := newKey(t)
	boom := errors.New("boom")
	k := auth.NewKeys("", &fakeKeyStore{err: boom})
	if _, ok, err := k.Identify(key); !errors.Is(err, boom) || ok {
		t.Fatalf("Identify = %v, %v; want the store's error", ok, err)
	}
}

func TestAdminFileReloads(t *testing.T) {
	firstKey, firstLine := newKey(t)
	secondKey, secondLine := newKey(t)
	adminFile := filepath.Join(t.TempDir(), "admin_keys")
	store := &fakeKeyStore{keys: []*paas.SSHKey{{Name: "first-user", Fingerprint: gossh.FingerprintSHA256(firstKey)}}}
	k := auth.NewKeys(adminFile, store)
	base := time.Unix(1700000000, 0)

	steps := []struct {
		name    string
		change  func()
		want    map[string]paas.Identity // absent: unknown
		wantErr bool
	}{
		{
			name:   "no admin file: only store keys",
			change: func() {},
			want:   map[string]paas.Identity{"first": {Name: "first-user"}},
		},
		{
			name:   "admin file appears",
			change: func() { writeFile(t, adminFile, firstLine+" first\n", base) },
			want:   map[string]paas.Identity{"first": {Name: "first", Admin: true}},
		},
		{
			name:   "second admin added",
			change: func() { writeFile(t, adminFile, firstLine+" first\n"+secondLine+" second\n", base.Add(time.Second)) },
			want: map[string]paas.Identity{
				"first":  {Name: "first", Admin: true},
				"second": {Name: "second", Admin: true},
			},
		},
		{
			name:   "first admin removed loses admin rights",
			change: func() { writeFile(t, adminFile, secondLine+" second\n", base.Add(2*time.Second)) },
			want: map[string]paas.Identity{
				"first":  {Name: "first-user"},
				"second": {Name: "second", Admin: true},
			},
		},
		{
			name: "same size, new mtime: renamed",
			// The same key with a comment of the same length: only the mtime tells.
			change: func() { writeFile(t, adminFile, secondLine+" dnoces\n", base.Add(3*time.Second)) },
			want: map[string]paas.Identity{
				"first":  {Name: "first-user"},
				"second": {Name: "dnoces", Admin: true},
			},
		},
		{
			name: "same mtime, new size: replaced",
			change: func() {
				writeFile(t, adminFile, firstLine+" first-again\n", base.Add(3*time.Second))
			},
			want: map[string]paas.Identity{
				"first": {Name: "first-again", Admin: true},
			},
		},
		{
			name:   "emptied file: no admins",
			change: func() { writeFile(t, adminFile, "", base.Add(4*time.Second)) },
			want:   map[string]paas.Identity{"first": {Name: "first-user"}},
		},
		{
			name: "file back, then removed: no admins",
			change: func() {
				writeFile(t, adminFile, secondLine+"\n", base.Add(5*time.Second))
				k.Identify(secondKey)
				os.Remove(adminFile)
			},
			want: map[string]paas.Identity{"first": {Name: "first-user"}},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			for name, key := range map[string]gossh.PublicKey{"first": firstKey, "second": secondKey} {
				id, ok, err := k.Identify(key)
				if err != nil {
					t.Fatal(err)
				}
				want, wantOK := st.want[name]
				if ok != wantOK || id.Name != want.Name || id.Admin != want.Admin {
					t.Fatalf("%s key: Identify = %+v, %v; want %+v, %v", name, id, ok, want, wantOK)
				}
			}
		})
	}
}

func TestAdminFileUnreadable(t *testing.T) {
	key, _ := newKey(t)
	// A directory where the file should be: it exists but cannot be read, even by root.
	adminFile := filepath.Join(t.TempDir(), "admin_keys")
	if err := os.Mkdir(adminFile, 0o700); err != nil {
		t.Fatal(err)
	}
	k := auth.NewKeys(adminFile, &fakeKeyStore{})
	if _, ok, err := k.Identify(key); err == nil || ok {
		t.Fatalf("Identify with an unreadable admin file = %v, %v; want an error", ok, err)
	}
}

func TestParseKeyAndNormalize(t *testing.T) {
	key, line := newKey(t)
	tests := []struct {
		name        string
		line        string
		wantComment string
		wantErr     bool
	}{
		{"bare", line, "", false},
		{"comment", line + " me@host", "me@host", false},
		{"surrounding space", "  " + line + " c \r\n", "c", false},
		{"options", `from="10.0.0.1" ` + line + " c", "c", false},
		{"garbage", "hello world", "", true},
		{"empty", "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, comment, err := auth.ParseKey([]byte(tc.line))
			if tc.wantErr {
				if err == nil {
					t.Fatal("ParseKey succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if comment != tc.wantComment {
				t.Fatalf("comment %q, want %q", comment, tc.wantComment)
			}
			if auth.Normalize(got) != line || gossh.FingerprintSHA256(got) != gossh.FingerprintSHA256(key) {
				t.Fatalf("Normalize = %q, want %q", auth.Normalize(got), line)
			}
		})
	}
}

func TestCanUseApp(t *testing.T) {
	app := &paas.App{Name: "hello", Owner: "alice"}
	orphan := &paas.App{Name: "orphan"}
	tests := []struct {
		name string
		id   paas.Identity
		app  *paas.App
		want bool
	}{
		{"owner", paas.Identity{Name: "alice"}, app, true},
		{"other user", paas.Identity{Name: "bob"}, app, false},
		{"admin", paas.Identity{Name: "root", Admin: true}, app, true},
		{"nameless admin", paas.Identity{Admin: true}, app, true},
		{"owner name differs in case", paas.Identity{Name: "Alice"}, app, false},
		{"nameless user and ownerless app", paas.Identity{}, orphan, false},
		{"admin and ownerless app", paas.Identity{Name: "root", Admin: true}, orphan, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := auth.CanUseApp(tc.id, tc.app); got != tc.want {
				t.Fatalf("CanUseApp(%+v, owner %q) = %v, want %v", tc.id, tc.app.Owner, got, tc.want)
			}
		})
	}
}
