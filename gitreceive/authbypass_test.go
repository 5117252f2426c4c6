package gitreceive

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/paas"
)

// keyAuth knows keys by fingerprint.
type keyAuth map[string]paas.Identity

func (k keyAuth) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	id, ok := k[gossh.FingerprintSHA256(key)]
	return id, ok, nil
}

type recordingRunner struct {
	mu  sync.Mutex
	ids []paas.Identity
}

func (r *recordingRunner) RunCommand(_ context.Context, id paas.Identity, _ []string, _ io.Reader, stdout, _ io.Writer) int {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
	io.WriteString(stdout, id.Name)
	return 0
}

type noRepos struct{}

func (noRepos) RepoFor(context.Context, paas.Identity, string, bool, io.Writer) (string, error) {
	return "", paas.ErrAppNotFound
}

type noPushes struct{}

func (noPushes) HandlePush(context.Context, *Push, io.Writer) error { return nil }
func (noPushes) PushDone(context.Context, *Push, io.Writer)         {}

// offerOnly presents one key's public half but signs with another key: the
// server accepts the offer (the query), then the signature fails to verify.
type offerOnly struct {
	offered gossh.PublicKey
	signer  gossh.Signer
}

func (o offerOnly) PublicKey() gossh.PublicKey { return o.offered }
func (o offerOnly) Sign(r io.Reader, data []byte) (*gossh.Signature, error) {
	return o.signer.Sign(r, data)
}

func newSigner(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOfferedKeyGrantsNothing is the CVE-2024-45337 class regression: a client
// that offers the administrator's public key (which the server accepts as a
// query) but authenticates by signing with another key must get that other
// key's identity, or none, never the administrator's.
func TestOfferedKeyGrantsNothing(t *testing.T) {
	admin, alice, stranger := newSigner(t), newSigner(t), newSigner(t)
	assertOfferedKeyGrantsNothing(t, keyAuth{
		gossh.FingerprintSHA256(admin.PublicKey()): {Name: "root", Admin: true},
		gossh.FingerprintSHA256(alice.PublicKey()): {Name: "alice"},
	}, admin, alice, stranger)
}

// assertOfferedKeyGrantsNothing runs the offered-key cases against a server
// whose authenticator knows admin as "root" and alice as "alice".
func assertOfferedKeyGrantsNothing(t *testing.T, authn Authenticator, admin, alice, stranger gossh.Signer) {
	t.Helper()
	runner := &recordingRunner{}
	dir := t.TempDir()
	srv, err := New(Options{
		Addr:        "127.0.0.1:0",
		HostKeyPath: filepath.Join(dir, "host_key"),
		DataDir:     dir,
		Auth:        authn,
		Repos:       noRepos{},
		Pushes:      noPushes{},
		Commands:    runner,
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, 5*time.Second) }()
	t.Cleanup(func() { cancel(); <-done })

	run := func(signers ...gossh.Signer) (string, error) {
		cfg := &gossh.ClientConfig{
			User:            "git",
			Auth:            []gossh.AuthMethod{gossh.PublicKeys(signers...)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(),
			Timeout:         5 * time.Second,
		}
		c, err := gossh.Dial("tcp", srv.Addr().String(), cfg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		out, err := s.Output("whoami")
		return string(out), err
	}

	tests := []struct {
		name    string
		signers []gossh.Signer
		want    string // identity the session must get; "" = refused
	}{
		{"admin key really used", []gossh.Signer{admin}, "root"},
		{"admin offered with alice's signature: refused", []gossh.Signer{offerOnly{admin.PublicKey(), alice}, alice}, ""},
		{"alice offered, then admin offered, alice signs", []gossh.Signer{alice, offerOnly{admin.PublicKey(), alice}}, "alice"},
		{"admin offered, stranger signs", []gossh.Signer{offerOnly{admin.PublicKey(), stranger}, stranger}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(tc.signers...)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("authenticated as %q, want refused", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got != tc.want {
				t.Fatalf("session identity %q, want %q", got, tc.want)
			}
		})
	}
}
