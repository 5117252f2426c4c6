package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var trustMu sync.Mutex

// TrustCA makes this process's default HTTP clients trust caPEM besides the
// system's roots: net/http's DefaultTransport and go-containerregistry's,
// which pack (through imgutil) and paasd's own registry calls use and give
// no other way to add a root. Call it at start, before any request.
func TrustCA(caPEM []byte) error {
	trustMu.Lock()
	defer trustMu.Unlock()
	for _, def := range []*http.RoundTripper{&http.DefaultTransport, &remote.DefaultTransport} {
		t, ok := (*def).(*http.Transport)
		if !ok {
			return errors.New("trust registry CA: the default transport is not an *http.Transport")
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if t.TLSClientConfig != nil && t.TLSClientConfig.RootCAs != nil {
			pool = t.TLSClientConfig.RootCAs.Clone()
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return errors.New("trust registry CA: no certificate in the PEM")
		}
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.RootCAs = pool
		*def = t
	}
	return nil
}

// WriteDockerCA writes caPEM as certsDir/HOST:PORT/ca.crt, where the Docker
// daemon looks for the CA of registry hostport (certsDir is
// /etc/docker/certs.d), so it pulls and pushes over verified TLS without
// --insecure-registry. Every node of the swarm needs it there.
func WriteDockerCA(certsDir, hostport string, caPEM []byte) error {
	if certsDir == "" {
		return nil
	}
	dir := filepath.Join(certsDir, hostport)
	if filepath.Dir(dir) != filepath.Clean(certsDir) {
		return fmt.Errorf("write registry CA for docker: invalid registry address %q", hostport)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write registry CA for docker: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, CAFileName), caPEM, 0o644); err != nil {
		return fmt.Errorf("write registry CA for docker: %w", err)
	}
	return nil
}
