package directory

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/directory/slapdtest"
)

func newKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k)))
}

// fixture is a running slapd with alice (groupOfNames team, posixGroup devs,
// admins), bob (no group), a user whose name is a filter-injection attempt,
// and one key stored on two entries.
type fixture struct {
	srv                          *slapdtest.Server
	alice, bob, evil, dup, other string
}

func start(t *testing.T) *fixture {
	t.Helper()
	slapdtest.Require(t)
	srv, err := slapdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	f := &fixture{srv: srv, alice: newKey(t), bob: newKey(t), evil: newKey(t), dup: newKey(t), other: newKey(t)}
	ldif := slapdtest.UserLDIF("alice", f.alice) +
		slapdtest.UserLDIF("bob", f.bob) +
		slapdtest.UserLDIF("dup1", f.dup) + slapdtest.UserLDIF("dup2", f.dup) +
		// uid carries filter syntax: unescaped in the group filter it would
		// read (memberUid=x)(|(memberUid=*) and join every posixGroup.
		"dn: cn=evil," + slapdtest.PeopleDN + "\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: ldapPublicKey\ncn: evil\nsn: evil\nuid: x)(|(memberUid=*\nsshPublicKey: " + f.evil + "\n\n" +
		slapdtest.GroupLDIF("team", "alice") +
		slapdtest.GroupLDIF("admins", "alice") +
		slapdtest.PosixGroupLDIF("devs", 5000, "alice")
	if err := srv.Modify(ldif); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) config() Config {
	return Config{
		URL: f.srv.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword,
		BaseDN: slapdtest.Suffix, AdminGroup: "cn=admins," + slapdtest.GroupsDN, Timeout: 2 * time.Second,
	}
}

func TestLookupKey(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		edit      func(*Config)
		key       string
		wantName  string
		wantGroup []string
		admin     bool
		wantErr   error
	}{
		{name: "groupOfNames and posixGroup", key: f.alice, wantName: "alice", wantGroup: []string{"admins", "devs", "team"}, admin: true},
		{name: "comment ignored", key: f.alice + " alice@laptop", wantName: "alice", wantGroup: []string{"admins", "devs", "team"}, admin: true},
		{name: "no groups", key: f.bob, wantName: "bob", wantGroup: nil},
		{name: "memberOf only", edit: func(c *Config) { c.GroupFilter = "-" }, key: f.alice, wantName: "alice", wantGroup: []string{"admins", "team"}, admin: true},
		{name: "AD-style name attribute", edit: func(c *Config) { c.NameAttribute = "cn"; c.UserFilter = "(objectClass=inetOrgPerson)" }, key: f.bob, wantName: "bob"},
		{name: "ldaps with CA file", edit: func(c *Config) { c.URL = f.srv.LDAPSURL; c.CAFile = f.srv.CAFile }, key: f.bob, wantName: "bob"},
		{name: "starttls with CA file", edit: func(c *Config) { c.StartTLS = true; c.CAFile = f.srv.CAFile }, key: f.bob, wantName: "bob"},
		{name: "ldaps without trusting the CA", edit: func(c *Config) { c.URL = f.srv.LDAPSURL }, key: f.bob, wantErr: ErrUnavailable},
		{name: "wrong bind password", edit: func(c *Config) { c.BindPassword = "wrong" }, key: f.bob, wantErr: ErrUnavailable},
		{name: "unknown key", key: f.other, wantErr: ErrNotFound},
		{name: "key on two entries", key: f.dup, wantErr: ErrNotFound},
		{name: "injection: wildcard key", key: "*", wantErr: ErrNotFound},
		{name: "injection: wildcard base64", key: "ssh-ed25519 *", wantErr: ErrNotFound},
		{name: "injection: filter in key", key: "x)(objectClass=*", wantErr: ErrNotFound},
		{name: "injection: NUL in key", key: f.alice + "\x00", wantErr: ErrNotFound},
		{name: "injection: filter in user name", key: f.evil, wantName: "x)(|(memberUid=*", wantGroup: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			u, err := c.LookupKey(ctx, tt.key)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %v", u, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Name != tt.wantName || !slices.Equal(u.Groups, tt.wantGroup) || u.Admin != tt.admin {
				t.Fatalf("got %+v; want name %q groups %v admin %v", u, tt.wantName, tt.wantGroup, tt.admin)
			}
		})
	}
}

func TestConnectionReusedAndOutage(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	c, err := New(f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.LookupKey(ctx, f.alice); err != nil {
		t.Fatal(err)
	}
	first := c.conn
	if _, err := c.LookupKey(ctx, f.bob); err != nil {
		t.Fatal(err)
	}
	if c.conn != first {
		t.Fatal("a second lookup dialled a new connection")
	}
	f.srv.Stop()
	start := time.Now()
	if _, err := c.LookupKey(ctx, f.alice); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup with slapd stopped: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("lookup against a stopped slapd took %v", d)
	}
	if err := f.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if u, err := c.LookupKey(ctx, f.alice); err != nil || u.Name != "alice" {
		t.Fatalf("after restart: %+v, %v", u, err)
	}
}

// A directory that accepts connections and never answers must not hang a lookup.
func TestSilentServerTimesOut(t *testing.T) {
	c, err := New(Config{URL: "ldap://" + silentServer(t), BindDN: "cn=x,dc=example,dc=com", BindPassword: "x", BaseDN: "dc=example,dc=com", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, err = c.LookupKey(context.Background(), "ssh-ed25519 AAAA")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("lookup against a silent server took %v", d)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad scheme", Config{URL: "http://x", BaseDN: "dc=x"}, "use ldap:// or ldaps://"},
		{"starttls on ldaps", Config{URL: "ldaps://x", StartTLS: true, BaseDN: "dc=x"}, "StartTLS"},
		{"no base", Config{URL: "ldap://x"}, "base DN"},
		{"bad dn", Config{URL: "ldap://x", BaseDN: "not a dn"}, "invalid DN"},
		{"bad filter", Config{URL: "ldap://x", BaseDN: "dc=x", UserFilter: "(objectClass=x"}, "invalid LDAP filter"},
		{"ok", Config{URL: "ldap://x", BaseDN: "dc=x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// Many logins at once against a directory that never answers: none waits
// much longer than one timeout, however many queue up.
func TestSilentServerConcurrentLookups(t *testing.T) {
	addr := silentServer(t)
	const timeout = 300 * time.Millisecond
	c, err := New(Config{URL: "ldap://" + addr, BindDN: "cn=x,dc=example,dc=com", BindPassword: "x", BaseDN: "dc=example,dc=com", Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 20
	durations := make(chan time.Duration, n)
	for range n {
		go func() {
			start := time.Now()
			c.LookupKey(context.Background(), "ssh-ed25519 AAAA")
			durations <- time.Since(start)
		}()
	}
	for range n {
		if d := <-durations; d > 5*timeout {
			t.Fatalf("a lookup took %v with a %v timeout", d, timeout)
		}
	}
}

// silentServer accepts TCP connections and never answers; it returns its address.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, conn)
		}
	}()
	return l.Addr().String()
}

func TestAuthenticate(t *testing.T) {
	f := start(t)
	if err := f.srv.Modify(slapdtest.PasswordLDIF("alice", "alice-pw") + slapdtest.PasswordLDIF("bob", "bob-pw")); err != nil {
		t.Fatal(err)
	}
	c, err := New(f.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	tests := []struct {
		name, user, password string
		want                 string // "" : ErrBadPassword
		admin                bool
	}{
		{name: "right password", user: "alice", password: "alice-pw", want: "alice", admin: true},
		{name: "other user", user: "bob", password: "bob-pw", want: "bob"},
		{name: "wrong password", user: "alice", password: "bob-pw"},
		{name: "empty password (an anonymous bind would succeed)", user: "alice", password: ""},
		{name: "unknown user", user: "carol", password: "x"},
		{name: "wildcard name", user: "*", password: "alice-pw"},
		{name: "filter injection", user: "alice)(uid=*", password: "alice-pw"},
		{name: "two entries share the name", user: "dup*", password: "x"},
		{name: "newline", user: "alice\n", password: "alice-pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := c.Authenticate(ctx, tt.user, tt.password)
			if tt.want == "" {
				if !errors.Is(err, ErrBadPassword) {
					t.Fatalf("Authenticate(%q) = %+v, %v; want ErrBadPassword", tt.user, u, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate(%q): %v", tt.user, err)
			}
			if u.Name != tt.want || u.Admin != tt.admin {
				t.Fatalf("got %+v, want name %s admin %v", u, tt.want, tt.admin)
			}
		})
	}
	if u, err := c.LookupUser(ctx, "alice"); err != nil || u.Name != "alice" || !u.Admin {
		t.Fatalf("LookupUser(alice) = %+v, %v", u, err)
	}
	if _, err := c.LookupUser(ctx, "*"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupUser(*) = %v, want ErrNotFound", err)
	}
	// The shared connection is still the service account's: key lookups work.
	if u, err := c.LookupKey(ctx, f.bob); err != nil || u.Name != "bob" {
		t.Fatalf("LookupKey after Authenticate: %+v, %v", u, err)
	}
}
