package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Credentials are the registry logins of the installation (`registry:login`),
// kept in one owner-only JSON file. They serve as the keychain of every pull
// and push paas does; passwords are never printed nor logged.
type Credentials struct {
	path string
	mu   sync.Mutex
}

var _ authn.Keychain = (*Credentials)(nil)

// NewCredentials keeps logins in the file at path (created on first login).
func NewCredentials(path string) *Credentials { return &Credentials{path: path} }

type credentialsFile struct {
	Auths map[string]authn.AuthConfig `json:"auths"`
}

func (c *Credentials) read() (credentialsFile, error) {
	f := credentialsFile{Auths: map[string]authn.AuthConfig{}}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read registry credentials: %w", err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("read registry credentials: %w", err)
	}
	if f.Auths == nil {
		f.Auths = map[string]authn.AuthConfig{}
	}
	return f, nil
}

// normalizeServer turns "https://ghcr.io/" or "GHCR.io" into "ghcr.io"; Docker
// Hub's names all become "index.docker.io".
func normalizeServer(server string) string {
	s := strings.ToLower(strings.TrimSpace(server))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s = strings.TrimSuffix(s, "/")
	if s == "docker.io" || s == "registry-1.docker.io" || strings.HasPrefix(s, "index.docker.io") {
		return "index.docker.io"
	}
	return s
}

// Login stores user and password for server, replacing an earlier login.
func (c *Credentials) Login(server, user, password string) error {
	server = normalizeServer(server)
	if server == "" || strings.ContainsAny(server, " /\t\n") {
		return fmt.Errorf("invalid registry server %q", server)
	}
	if user == "" || password == "" {
		return errors.New("a user name and a password are required")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return err
	}
	f.Auths[server] = authn.AuthConfig{Username: user, Password: password}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("store registry credentials: %w", err)
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("store registry credentials: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return fmt.Errorf("store registry credentials: %w", err)
	}
	return nil
}

// Check asks server's registry API whether it accepts user and password:
// through its token service when it has one, with Basic authentication
// otherwise (GET /v2/).
func (c *Credentials) Check(ctx context.Context, server, user, password string) error {
	reg, err := name.NewRegistry(normalizeServer(server))
	if err != nil {
		return fmt.Errorf("invalid registry server %q: %w", server, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	tr, err := transport.NewWithContext(ctx, reg, auth, http.DefaultTransport, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("log in to %s: %w", reg.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("log in to %s: %w", reg.RegistryStr(), err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("log in to %s: the registry refused user %s and this password", reg.RegistryStr(), user)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("log in to %s: GET /v2/ answered %s", reg.RegistryStr(), resp.Status)
	}
	return nil
}

// Servers returns the registries with a login, with their user names.
func (c *Credentials) Servers() (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for s, a := range f.Auths {
		out[s] = a.Username
	}
	return out, nil
}

// Resolve implements authn.Keychain: the login of the resource's registry,
// anonymous when there is none.
func (c *Credentials) Resolve(r authn.Resource) (authn.Authenticator, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := c.read()
	if err != nil {
		return nil, err
	}
	if a, ok := f.Auths[normalizeServer(r.RegistryStr())]; ok {
		return authn.FromConfig(a), nil
	}
	return authn.Anonymous, nil
}
