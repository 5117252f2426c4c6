package gitreceive

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/auth"
	"paas/internal/directory"
	"paas/internal/directory/slapdtest"
	"paas/internal/paas"
)

type noKeys struct{}

func (noKeys) Keys() ([]*paas.SSHKey, error) { return nil, nil }

func authorizedKey(s gossh.Signer) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(s.PublicKey())))
}

// The offered-key regression with the keys in a real slapd: offering the
// directory administrator's key while signing with another gains nothing.
func TestOfferedDirectoryKeyGrantsNothing(t *testing.T) {
	slapdtest.Require(t)
	srv, err := slapdtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	admin, alice, stranger := newSigner(t), newSigner(t), newSigner(t)
	if err := srv.Modify(slapdtest.UserLDIF("root", authorizedKey(admin)) + slapdtest.UserLDIF("alice", authorizedKey(alice)) + slapdtest.GroupLDIF("admins", "root")); err != nil {
		t.Fatal(err)
	}
	client, err := directory.New(directory.Config{
		URL: srv.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword,
		BaseDN: slapdtest.Suffix, AdminGroup: "cn=admins," + slapdtest.GroupsDN, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	local := auth.NewKeys(filepath.Join(t.TempDir(), "none"), noKeys{})
	authn := auth.NewDirectoryKeys(local, client, time.Minute, 2*time.Second, slog.New(slog.DiscardHandler))
	if id, ok, err := authn.Identify(admin.PublicKey()); err != nil || !ok || !id.Admin || id.Name != "root" {
		t.Fatalf("directory admin: %+v %v %v", id, ok, err)
	}
	assertOfferedKeyGrantsNothing(t, authn, admin, alice, stranger)
}
