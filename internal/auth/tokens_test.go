package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/directory"
	"paas/internal/directory/slapdtest"
	"paas/internal/paas"
	"paas/internal/store"
)

func newTokens(t *testing.T, dir UserDirectory, ttl time.Duration) (*Tokens, *store.Store, *clock, string) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	adminFile := filepath.Join(t.TempDir(), "admin_keys")
	writeAdmin(t, adminFile, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(genKey(t))))+" root\n")
	clk := &clock{t: time.Unix(1700000000, 0)}
	users := NewUsers(NewKeys(adminFile, st), dir, ttl, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	users.now = clk.now
	tokens := NewTokens(st, users)
	tokens.now = clk.now
	return tokens, st, clk, adminFile
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	tokens, st, clk, adminFile := newTokens(t, nil, 0)
	root := paas.Identity{Name: "root", Admin: true, Source: "admin-keys"}
	tok, rec, err := tokens.Create(context.Background(), root, "ci", 24*time.Hour)
	must(t, err)
	if !strings.HasPrefix(tok, "paas_") || len(tok) != len("paas_")+12+1+16+1+43 {
		t.Fatalf("token %q: not paas_INST_ID_SECRET", tok)
	}
	// Only the SHA-256 of the secret is stored.
	list, err := st.Tokens("root")
	must(t, err)
	raw, _ := json.Marshal(list)
	secret := tok[len(tok)-43:]
	if len(list) != 1 || strings.Contains(string(raw), secret) || strings.Contains(string(raw), tok) || len(list[0].Hash) != 32 {
		t.Fatalf("stored %s: want one token with a 32-byte hash and no secret", raw)
	}
	if rec.ExpiresAt != clk.now().UTC().Add(24*time.Hour) {
		t.Errorf("expires at %v", rec.ExpiresAt)
	}
	if _, _, err := tokens.Create(context.Background(), root, "ci", 0); !errors.Is(err, store.ErrTokenExists) {
		t.Errorf("a second ci: %v, want ErrTokenExists", err)
	}
	if _, _, err := tokens.Create(context.Background(), paas.Identity{Name: "root", Via: "token ci"}, "more", 0); err == nil {
		t.Error("a token made a token")
	}

	id, err := tokens.Identify(ctx, tok)
	must(t, err)
	if id.Name != "root" || !id.Admin || id.Via != "token ci" || id.Source != "admin-keys" {
		t.Errorf("Identify = %+v", id)
	}

	alice := paas.Identity{Name: "alice", Source: "ssh-keys"}
	must(t, st.AddKey(&paas.SSHKey{Name: "alice", Fingerprint: gossh.FingerprintSHA256(genKey(t))}))
	atok, _, err := tokens.Create(context.Background(), alice, "laptop", 0)
	must(t, err)
	other := "paas_0123456789ab" + tok[len("paas_")+12:]
	for _, c := range []struct {
		name, token string
		want        error
	}{
		{"forged secret", tok[:len(tok)-43] + strings.Repeat("A", 43), ErrBadToken},
		{"unknown id", tok[:len("paas_")+13] + "0123456789abcdef" + tok[len("paas_")+29:], ErrBadToken},
		{"another installation", other, ErrOtherInstallation},
		{"malformed", "paas_xyz", ErrBadToken},
		{"not a paas token", "ghp_abc", ErrBadToken},
		{"short secret", tok[:len(tok)-2], ErrBadToken},
		{"the secret spelled otherwise", tok[:len(tok)-1] + respell(tok[len(tok)-1]), ErrBadToken},
	} {
		if _, err := tokens.Identify(ctx, c.token); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if id, err := tokens.Identify(ctx, atok); err != nil || id.Name != "alice" || id.Admin {
		t.Errorf("alice's token: %+v, %v", id, err)
	}

	// Expiry, revocation, and users who left.
	clk.add(24 * time.Hour)
	if _, err := tokens.Identify(ctx, tok); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("expired: %v", err)
	}
	must(t, tokens.Revoke("alice", "laptop"))
	if _, err := tokens.Identify(ctx, atok); !errors.Is(err, ErrBadToken) {
		t.Errorf("revoked: %v", err)
	}
	if err := tokens.Revoke("alice", "laptop"); !errors.Is(err, paas.ErrTokenNotFound) {
		t.Errorf("revoked twice: %v", err)
	}
	atok, _, err = tokens.Create(context.Background(), alice, "laptop", 0)
	must(t, err)
	must(t, st.RemoveKey("alice"))
	if _, err := tokens.Identify(ctx, atok); !errors.Is(err, ErrTokenUserGone) {
		t.Errorf("alice's key removed: %v", err)
	}
	// A web session of a link is its key's user; a user unknown now, or
	// one of the OpenID provider without a directory, gets no token.
	ltok, _, err := tokens.Create(ctx, paas.Identity{Name: "root", Admin: true, Source: paas.SourceWebLink + "/admin-keys", Via: "web"}, "web", 0)
	must(t, err)
	if id, err := tokens.Identify(ctx, ltok); err != nil || id.Name != "root" || !id.Admin {
		t.Errorf("a link session's token: %+v, %v", id, err)
	}
	if _, _, err := tokens.Create(ctx, alice, "again", 0); err == nil || !strings.Contains(err.Error(), "ssh-keys:list does not know alice") {
		t.Errorf("a user without a key now: %v", err)
	}
	if _, _, err := tokens.Create(ctx, paas.Identity{Name: "olga", Source: paas.SourceWebOIDC, Via: "web"}, "ci", 0); err == nil || !strings.Contains(err.Error(), "--ldap-url") {
		t.Errorf("an OpenID user without a directory: %v", err)
	}
	rtok, _, err := tokens.Create(context.Background(), root, "ops", 0)
	must(t, err)
	writeAdmin(t, adminFile, string(gossh.MarshalAuthorizedKey(genKey(t))))
	if _, err := tokens.Identify(ctx, rtok); !errors.Is(err, ErrTokenUserGone) {
		t.Errorf("root's key out of the admin keys: %v", err)
	}
}

// A directory user's token follows the directory, as their keys do: a
// user removed from it, or from a group, loses them within the TTL.
func TestTokensDirectoryUser(t *testing.T) {
	slapdtest.Require(t)
	srv, err := slapdtest.Start(t.TempDir())
	must(t, err)
	t.Cleanup(srv.Stop)
	must(t, srv.Modify(slapdtest.UserLDIF("carol", Normalize(genKey(t)))+slapdtest.GroupLDIF("team", "carol")))
	client, err := directory.New(directory.Config{URL: srv.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword, BaseDN: slapdtest.Suffix, Timeout: time.Second})
	must(t, err)
	defer client.Close()
	const ttl = time.Minute
	tokens, _, clk, _ := newTokens(t, client, ttl)
	ctx := context.Background()
	tok, _, err := tokens.Create(context.Background(), paas.Identity{Name: "carol", Source: "ldap", Groups: []string{"team"}}, "ci", 0)
	must(t, err)
	// Signed in on the web, at the OpenID provider or with her password,
	// she is the directory's carol; dave is not in it.
	for _, src := range []string{paas.SourceWebOIDC, paas.SourceWebPassword, paas.SourceWebLink + "/ldap"} {
		wtok, _, err := tokens.Create(ctx, paas.Identity{Name: "carol", Source: src, Via: "web"}, "web-"+src[len(src)-4:], 0)
		must(t, err)
		if id, err := tokens.Identify(ctx, wtok); err != nil || id.Name != "carol" || !slices.Equal(id.Groups, []string{"team"}) {
			t.Errorf("%s token: %+v, %v", src, id, err)
		}
	}
	if _, _, err := tokens.Create(ctx, paas.Identity{Name: "dave", Source: paas.SourceWebOIDC, Via: "web"}, "ci", 0); err == nil || !strings.Contains(err.Error(), "the directory does not know dave") {
		t.Errorf("dave, not in the directory: %v", err)
	}
	check := func(wantOK bool, wantGroups []string) {
		t.Helper()
		id, err := tokens.Identify(ctx, tok)
		if wantOK != (err == nil) || (err == nil && (id.Name != "carol" || !slices.Equal(id.Groups, wantGroups))) {
			t.Fatalf("Identify = %+v, %v; want ok %v, groups %v", id, err, wantOK, wantGroups)
		}
		if err != nil && !errors.Is(err, ErrTokenUserGone) {
			t.Fatalf("refused with %v, want ErrTokenUserGone", err)
		}
	}
	check(true, []string{"team"})
	must(t, srv.Modify("dn: uid=carol,"+slapdtest.PeopleDN+"\nchangetype: delete\n\n"))
	clk.add(ttl / 2)
	check(true, []string{"team"}) // confirmed less than TTL ago
	clk.add(ttl)
	check(false, nil)
}

// respell returns another base64url character that differs from c only in
// the two low bits, which a 32-byte value's last character does not use.
func respell(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1 : i^1+1]
}
