package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// testRegistry is a Registry behind a real HTTPS server on 127.0.0.1, with
// its CA, login and a client trusting the CA.
type testRegistry struct {
	*Registry
	dir    string // storage root
	host   string // 127.0.0.1:PORT
	certs  *Certificates
	login  *Login
	client *http.Client // trusts the CA, sends no credentials by itself
}

func newTestRegistry(t *testing.T, quiet time.Duration) *testRegistry {
	t.Helper()
	base := t.TempDir()
	certs, err := LoadCertificates(filepath.Join(base, "tls"), []string{"127.0.0.1", "registry.test"})
	if err != nil {
		t.Fatal(err)
	}
	login, err := LoadLogin(filepath.Join(base, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	tr := serveRegistry(t, filepath.Join(base, "storage"), certs, login, quiet)
	return tr
}

func serveRegistry(t *testing.T, dir string, certs *Certificates, login *Login, quiet time.Duration) *testRegistry {
	t.Helper()
	reg, err := New(Options{Dir: dir, HTPasswd: login.HTPasswd(), Quiet: quiet, Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(reg)
	srv.TLS = certs.TLSConfig()
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.CA)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	return &testRegistry{Registry: reg, dir: dir, host: strings.TrimPrefix(srv.URL, "https://"), certs: certs, login: login, client: client}
}

func (tr *testRegistry) auth() authn.Authenticator {
	return &authn.Basic{Username: tr.login.User, Password: tr.login.Password}
}

func (tr *testRegistry) remoteOpts() []remote.Option {
	return []remote.Option{remote.WithAuth(tr.auth()), remote.WithTransport(tr.client.Transport)}
}

func (tr *testRegistry) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(tr.host + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// push writes img as repo:tag and returns its digest.
func (tr *testRegistry) push(t *testing.T, repoTag string, img v1.Image) string {
	t.Helper()
	if err := remote.Write(tr.ref(t, repoTag), img, tr.remoteOpts()...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// status sends method path with the credentials user:password ("" for none)
// and returns the response's status and headers.
func (tr *testRegistry) status(t *testing.T, method, path, user, password string, body io.Reader, headers ...string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+tr.host+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// exists reports whether ref (repo:tag or repo@digest) resolves.
func (tr *testRegistry) exists(t *testing.T, ref string) bool {
	t.Helper()
	_, err := remote.Head(tr.ref(t, ref), tr.remoteOpts()...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return false
	}
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return true
}

func (tr *testRegistry) blobExists(t *testing.T, repo string, d v1.Hash) bool {
	t.Helper()
	code, _ := tr.status(t, http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), tr.login.User, tr.login.Password, nil)
	return code == http.StatusOK
}

// blobFiles counts the blobs on disk.
func (tr *testRegistry) blobFiles(t *testing.T) int {
	t.Helper()
	n := 0
	root := filepath.Join(tr.dir, "docker", "registry", "v2", "blobs")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "data" {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (tr *testRegistry) collect(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tr.Collect(ctx); err != nil {
		t.Fatal(err)
	}
}

func randomImage(t *testing.T, extra ...v1.Layer) v1.Image {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) > 0 {
		if img, err = mutate.AppendLayers(img, extra...); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func randomLayer(t *testing.T) v1.Layer {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls[0]
}

func uniqueBlobs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	out := []v1.Hash{d, m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// TestRoundTrip pushes and pulls images, also across a restart, and from
// several goroutines at once.
func TestRoundTrip(t *testing.T) {
	tr := newTestRegistry(t, 0)
	shared := randomLayer(t)
	var wg sync.WaitGroup
	imgs := make([]v1.Image, 6)
	for i := range imgs {
		imgs[i] = randomImage(t, shared)
	}
	digests := make([]string, len(imgs))
	for i := range imgs {
		wg.Go(func() {
			repo := []string{"conc/app0:v", "conc/app1:v"}[i%2] + string(rune('0'+i))
			if err := remote.Write(tr.ref(t, repo), imgs[i], tr.remoteOpts()...); err != nil {
				t.Errorf("push %s: %v", repo, err)
			}
			d, _ := imgs[i].Digest()
			digests[i] = d.String()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	again := serveRegistry(t, tr.dir, tr.certs, tr.login, 0)
	for i, d := range digests {
		repo := []string{"conc/app0", "conc/app1"}[i%2]
		img, err := remote.Image(again.ref(t, repo+"@"+d), again.remoteOpts()...)
		if err != nil {
			t.Fatalf("pull %s@%s after restart: %v", repo, d, err)
		}
		if got, _ := img.Digest(); got.String() != d {
			t.Errorf("pulled %s, want %s", got, d)
		}
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("pull layer: %v", err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("pull layer: %v", err)
			}
			rc.Close()
		}
	}
	tags, err := remote.List(tr.ref(t, "conc/app0:x").Context(), tr.remoteOpts()...)
	if err != nil || strings.Join(tags, ",") != "v0,v2,v4" {
		t.Errorf("tags of conc/app0: %v, %v", tags, err)
	}
}

// TestAuth: every pull and push endpoint refuses a client without
// credentials or with wrong ones (401 and a Basic challenge), and serves one
// with the registry's login.
func TestAuth(t *testing.T) {
	tr := newTestRegistry(t, 0)
	img := randomImage(t)
	d := tr.push(t, "apps/web:v1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0].Digest.String()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := []struct {
		name, method, path string
		body               string
		headers            []string
		ok                 int
	}{
		{"ping", "GET", "/v2/", "", nil, http.StatusOK},
		{"pull manifest by tag", "GET", "/v2/apps/web/manifests/v1", "", []string{"Accept", string(m.MediaType)}, http.StatusOK},
		{"pull manifest by digest", "HEAD", "/v2/apps/web/manifests/" + d, "", []string{"Accept", string(m.MediaType)}, http.StatusOK},
		{"pull blob", "GET", "/v2/apps/web/blobs/" + layer, "", nil, http.StatusOK},
		{"tags", "GET", "/v2/apps/web/tags/list", "", nil, http.StatusOK},
		{"catalog", "GET", "/v2/_catalog", "", nil, http.StatusOK},
		{"push: start upload", "POST", "/v2/apps/web/blobs/uploads/", "", nil, http.StatusAccepted},
		{"push: mount", "POST", "/v2/apps/other/blobs/uploads/?mount=" + layer + "&from=apps/web", "", nil, http.StatusCreated},
		{"push: manifest", "PUT", "/v2/apps/web/manifests/v2", string(raw), []string{"Content-Type", string(m.MediaType)}, http.StatusCreated},
	}
	creds := []struct {
		name, user, password string
		ok                   bool
	}{
		{"anonymous", "", "", false},
		{"wrong password", LoginUser, "not-the-password", false},
		{"wrong user", "docker", tr.login.Password, false},
		{"registry login", tr.login.User, tr.login.Password, true},
	}
	for _, c := range creds {
		for _, e := range endpoints {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				code, h := tr.status(t, e.method, e.path, c.user, c.password, strings.NewReader(e.body), e.headers...)
				if !c.ok {
					if code != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
						t.Errorf("%s %s: %d, WWW-Authenticate %q; want 401 and a Basic challenge", e.method, e.path, code, h.Get("WWW-Authenticate"))
					}
					return
				}
				if code != e.ok {
					t.Errorf("%s %s: %d, want %d", e.method, e.path, code, e.ok)
				}
			})
		}
	}
	// Nothing the refused clients sent was stored.
	if tr.exists(t, "apps/other@"+d) {
		t.Error("a manifest appeared in apps/other")
	}
}

// TestTLS: a client trusting the installation's CA connects; one trusting
// only the system's roots does not; the certificate names every host and is
// kept across starts, and made again for a new host by the same CA.
func TestTLS(t *testing.T) {
	tr := newTestRegistry(t, 0)
	if code, _ := tr.status(t, "GET", "/v2/", tr.login.User, tr.login.Password, nil); code != http.StatusOK {
		t.Fatalf("client trusting the CA: %d", code)
	}
	_, err := http.Get("https://" + tr.host + "/v2/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("client with the system's roots: err %v, want an unknown authority", err)
	}
	plain, err := http.Get("http://" + tr.host + "/v2/")
	if err == nil {
		plain.Body.Close()
		if plain.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP: %d, want 400", plain.StatusCode)
		}
	}

	// The handshake sends the CA after the certificate: install.sh --join
	// takes it from there by the SHA-256 nodes:join-command printed.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(tr.certs.CA)
	conn, err := tls.Dial("tcp", tr.host, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	peers := conn.ConnectionState().PeerCertificates
	conn.Close()
	if block, _ := pem.Decode(tr.certs.CA); len(peers) != 2 || block == nil || !bytes.Equal(peers[1].Raw, block.Bytes) {
		t.Errorf("the handshake sent %d certificates, want the server's and then the CA", len(peers))
	}

	leaf := tr.certs.Server.Leaf
	for _, h := range []string{"127.0.0.1", "registry.test"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not name %s: %v", h, err)
		}
	}
	for _, f := range []struct {
		name string
		mode fs.FileMode
	}{{"ca.key", 0o600}, {"server.key", 0o600}, {"ca.crt", 0o644}, {"server.crt", 0o644}} {
		fi, err := os.Stat(filepath.Join(tr.certs.Dir, f.name))
		if err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: %v, %v; want mode %o", f.name, fi.Mode().Perm(), err, f.mode)
		}
	}

	same, err := LoadCertificates(tr.certs.Dir, []string{"registry.test", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(same.CA) != string(tr.certs.CA) || !same.Server.Leaf.Equal(leaf) {
		t.Error("a second start made a new CA or certificate for the same hosts")
	}
	moved, err := LoadCertificates(tr.certs.Dir, []string{"10.9.8.7", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(moved.CA) != string(tr.certs.CA) || moved.Server.Leaf.Equal(leaf) {
		t.Fatal("a new host kept the old certificate or made a new CA")
	}
	if err := moved.Server.Leaf.VerifyHostname("10.9.8.7"); err != nil {
		t.Error(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(tr.certs.CA)
	if _, err := moved.Server.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.9.8.7"}); err != nil {
		t.Errorf("new certificate does not chain to the CA: %v", err)
	}
}

func TestLogin(t *testing.T) {
	dir := t.TempDir()
	l, err := LoadLogin(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.User != LoginUser || len(l.Password) < 40 {
		t.Fatalf("login %q with a %d-character password", l.User, len(l.Password))
	}
	for _, f := range []string{PasswordFileName, HTPasswdFileName} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	ht, _ := os.ReadFile(l.HTPasswd())
	if !strings.HasPrefix(string(ht), "paas:$2a$") || strings.Contains(string(ht), l.Password) {
		t.Errorf("htpasswd %q: want a bcrypt hash and no password", ht)
	}
	again, err := LoadLogin(dir)
	if err != nil || again.Password != l.Password {
		t.Errorf("second load: %v, same password %v", err, again.Password == l.Password)
	}
	// A password changed by hand gets a new hash.
	if err := os.WriteFile(filepath.Join(dir, PasswordFileName), []byte("changed-by-hand\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := LoadLogin(dir)
	if err != nil || changed.Password != "changed-by-hand" {
		t.Fatalf("after a change: %v, %q", err, changed.Password)
	}
	tr := serveRegistry(t, filepath.Join(t.TempDir(), "storage"), newTestCerts(t), changed, 0)
	if code, _ := tr.status(t, "GET", "/v2/", LoginUser, "changed-by-hand", nil); code != http.StatusOK {
		t.Errorf("the changed password: %d", code)
	}
	if code, _ := tr.status(t, "GET", "/v2/", LoginUser, l.Password, nil); code != http.StatusUnauthorized {
		t.Errorf("the old password: %d", code)
	}
}

func newTestCerts(t *testing.T) *Certificates {
	t.Helper()
	c, err := LoadCertificates(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRefusesMissingHTPasswd(t *testing.T) {
	if _, err := New(Options{Dir: t.TempDir(), HTPasswd: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New with a missing htpasswd file succeeded")
	}
}

func TestWriteDockerCA(t *testing.T) {
	dir := t.TempDir()
	if err := WriteDockerCA(dir, "10.0.0.5:5000", []byte("PEM")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "10.0.0.5:5000", "ca.crt"))
	if err != nil || string(b) != "PEM" {
		t.Errorf("ca.crt: %q, %v", b, err)
	}
	for _, bad := range []string{"../x", "a/b", "", "."} {
		if err := WriteDockerCA(dir, bad, []byte("PEM")); err == nil {
			t.Errorf("WriteDockerCA(%q) succeeded", bad)
		}
	}
}
