package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/directory"
	"paas/internal/directory/slapdtest"
	"paas/internal/paas"
)

type noStoreKeys struct{}

func (noStoreKeys) Keys() ([]*paas.SSHKey, error) { return nil, nil }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func genKey(t *testing.T) gossh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The outage policy, step by step against a real slapd: confirmed keys work
// from memory for TTL (also while slapd is down), unknown keys are refused,
// removals and group changes apply after TTL, local keys work throughout.
func TestDirectoryKeysOutagePolicy(t *testing.T) {
	slapdtest.Require(t)
	srv, err := slapdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	alice, carol, stranger, admin := genKey(t), genKey(t), genKey(t), genKey(t)
	if err := srv.Modify(slapdtest.UserLDIF("alice", Normalize(alice)) + slapdtest.UserLDIF("carol", Normalize(carol)) + slapdtest.GroupLDIF("team", "alice")); err != nil {
		t.Fatal(err)
	}
	adminFile := filepath.Join(t.TempDir(), "admin_keys")
	writeAdmin(t, adminFile, string(gossh.MarshalAuthorizedKey(admin)))
	client, err := directory.New(directory.Config{URL: srv.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword, BaseDN: slapdtest.Suffix, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	clk := &clock{t: time.Unix(1700000000, 0)}
	const ttl = time.Minute
	dk := NewDirectoryKeys(NewKeys(adminFile, noStoreKeys{}), client, ttl, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	dk.now = clk.now

	type want struct {
		key    gossh.PublicKey
		ok     bool
		name   string
		groups []string
	}
	steps := []struct {
		name  string
		do    func()
		wants []want
	}{
		{"directory up", func() {}, []want{
			{alice, true, "alice", []string{"team"}}, {carol, true, "carol", nil}, {stranger, false, "", nil}, {admin, true, "admin", nil},
		}},
		{"removed from the group and directory, within TTL: still cached", func() {
			clk.add(ttl / 2)
			must(t, srv.Modify("dn: cn=team,"+slapdtest.GroupsDN+"\nchangetype: modify\ndelete: member\nmember: uid=alice,"+slapdtest.PeopleDN+"\n-\nadd: member\nmember: cn=team,"+slapdtest.GroupsDN+"\n\n"+
				"dn: uid=carol,"+slapdtest.PeopleDN+"\nchangetype: delete\n\n"))
		}, []want{{alice, true, "alice", []string{"team"}}, {carol, true, "carol", nil}}},
		{"after TTL: group change and removal apply", func() { clk.add(ttl) }, []want{
			{alice, true, "alice", nil}, {carol, false, "", nil},
		}},
		{"slapd down within TTL: confirmed keys work, unknown refused, local works", func() {
			srv.Stop()
			clk.add(ttl / 2)
		}, []want{{alice, true, "alice", nil}, {stranger, false, "", nil}, {carol, false, "", nil}, {admin, true, "admin", nil}}},
		{"slapd down past TTL: refused, local works", func() { clk.add(ttl) }, []want{
			{alice, false, "", nil}, {admin, true, "admin", nil},
		}},
		{"slapd back", func() { must(t, srv.Restart()) }, []want{{alice, true, "alice", nil}, {carol, false, "", nil}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			for _, w := range st.wants {
				start := time.Now()
				id, ok, err := dk.Identify(w.key)
				if err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Identify took %v", d)
				}
				if ok != w.ok || id.Name != w.name || !slices.Equal(id.Groups, w.groups) {
					t.Errorf("Identify = %+v, %v; want %q %v, %v", id, ok, w.name, w.groups, w.ok)
				}
			}
		})
	}
}

func writeAdmin(t *testing.T, path, data string) {
	t.Helper()
	writeFileT(t, path, data)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFileT(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
