package routing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/acme"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/router/contract"
)

// LetsEncryptURL is Let's Encrypt's production ACME directory.
const LetsEncryptURL = "https://acme-v02.api.letsencrypt.org/directory"

// challengeVisible bounds the wait for the routers to serve a challenge.
const challengeVisible = 15 * time.Second

// ACMENames are the names an ACME certificate of the app covers: its exact
// custom domains and APP.DOMAIN. Wildcards need DNS-01, which HTTP-01 cannot
// prove, so they are left to uploaded certificates.
func (s *Service) ACMENames(app string, r *paas.Routing) []string {
	names := []string{s.DefaultHost(app)}
	for _, d := range r.Domains {
		if !strings.HasPrefix(d, "*.") {
			names = append(names, d)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Issue obtains a certificate for the app's names from the ACME server,
// answering HTTP-01 challenges through the routers, stores it and publishes
// it. Progress lines go to out.
func (s *Service) Issue(ctx context.Context, app string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	s.acmeMu.Lock()
	defer s.acmeMu.Unlock()
	r, err := s.store.Routing(app)
	if err != nil {
		return err
	}
	names := s.ACMENames(app, r)
	cl, err := s.acmeClient(ctx)
	if err != nil {
		return err
	}
	output.Step(out, "Requesting a certificate for %s", strings.Join(names, ", "))
	order, err := cl.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		return fmt.Errorf("acme: new order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := s.authorize(ctx, cl, u, out); err != nil {
			return err
		}
	}
	if order, err = cl.WaitOrder(ctx, order.URI); err != nil {
		return fmt.Errorf("acme: wait for the order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, key)
	if err != nil {
		return fmt.Errorf("acme: make a certificate request: %w", err)
	}
	der, _, err := cl.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		return fmt.Errorf("acme: finalize the order: %w", err)
	}
	var chain strings.Builder
	for _, d := range der {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	cert, err := ParseCertKey(append([]byte(chain.String()), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), time.Now())
	if err != nil {
		return fmt.Errorf("acme: the issued certificate: %w", err)
	}
	if _, err := s.store.UpdateRouting(app, func(r *paas.Routing) error {
		r.ACMECert = cert
		return nil
	}); err != nil {
		return err
	}
	if err := s.Publish(ctx, app); err != nil {
		return err
	}
	output.Step(out, "Certificate installed for %s, valid until %s", strings.Join(names, ", "), cert.NotAfter.Format(time.RFC3339))
	s.log.Info("certificate issued", "app", app, "names", names, "not_after", cert.NotAfter)
	return nil
}

// authorize proves control of one name with HTTP-01: the key authorization
// is published to the routers, checked to be served on this host's router,
// then the ACME server is asked to validate.
func (s *Service) authorize(ctx context.Context, cl *acme.Client, url string, out io.Writer) error {
	z, err := cl.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("acme: get authorization: %w", err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			chal = c
		}
	}
	if chal == nil {
		return fmt.Errorf("acme: %s: the server offers no http-01 challenge", z.Identifier.Value)
	}
	keyAuth, err := cl.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	if err := s.setChallenge(ctx, chal.Token, keyAuth); err != nil {
		return err
	}
	defer func() {
		if err := s.setChallenge(context.WithoutCancel(ctx), chal.Token, ""); err != nil {
			s.log.Warn("cannot withdraw an ACME challenge", "err", err)
		}
	}()
	if err := s.waitServed(ctx, z.Identifier.Value, chal.Token, keyAuth); err != nil {
		return err
	}
	output.Step(out, "Validating %s", z.Identifier.Value)
	if _, err := cl.Accept(ctx, chal); err != nil {
		return fmt.Errorf("acme: accept the challenge for %s: %w", z.Identifier.Value, err)
	}
	if _, err := cl.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("acme: %s was not validated: %w", z.Identifier.Value, err)
	}
	return nil
}

func (s *Service) setChallenge(ctx context.Context, token, keyAuth string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if keyAuth == "" {
		delete(s.challenges, token)
	} else {
		s.challenges[token] = keyAuth
	}
	return s.publishGlobal(ctx)
}

// waitServed waits until the router on this host answers the challenge.
func (s *Service) waitServed(ctx context.Context, host, token, keyAuth string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d%s%s", s.opts.HTTPPort, contract.ACMEChallengePath, token)
	c := &http.Client{Timeout: 2 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(challengeVisible)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Host = host
		if resp, err := c.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == keyAuth {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("acme: the router on port %d does not serve the challenge for %s", s.opts.HTTPPort, host)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// acmeClient returns a client with the installation's account, registering
// it on first use. The account key is kept in DataDir/acme, owner-only.
func (s *Service) acmeClient(ctx context.Context) (*acme.Client, error) {
	key, err := loadOrCreateKey(filepath.Join(s.opts.DataDir, "acme", "account.key"))
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.opts.ACME.Roots, MinVersion: tls.VersionTLS12}
	cl := &acme.Client{Key: key, DirectoryURL: s.opts.ACME.DirectoryURL, HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}, UserAgent: "paas"}
	acct := &acme.Account{}
	if s.opts.ACME.Email != "" {
		acct.Contact = []string{"mailto:" + s.opts.ACME.Email}
	}
	if _, err := cl.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("acme: register account at %s: %w", s.opts.ACME.DirectoryURL, err)
	}
	return cl, nil
}

func loadOrCreateKey(path string) (crypto.Signer, error) {
	if data, err := os.ReadFile(path); err == nil {
		b, _ := pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("read ACME account key %s: no PEM", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("read ACME account key %s: %w", path, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("read ACME account key %s: not a signing key", path)
		}
		return signer, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write ACME account key: %w", err)
	}
	return key, nil
}

// Run renews ACME certificates until ctx ends: at start and every
// CheckEvery, an app with Let's Encrypt enabled whose certificate expires
// within RenewBefore, or no longer covers all its names, gets a new one.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.ACME.CheckEvery)
	defer t.Stop()
	for {
		s.renewDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Service) renewDue(ctx context.Context) {
	all, err := s.store.AllRouting()
	if err != nil {
		s.log.Warn("cannot read routing for renewals", "err", err)
		return
	}
	for app, r := range all {
		if !r.LetsEncrypt || !s.renewalDue(app, r, time.Now()) {
			continue
		}
		if err := s.Issue(ctx, app, nil); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("certificate renewal failed; retrying at the next check", "app", app, "err", err)
		}
	}
}

// renewalDue reports whether the app's ACME certificate must be replaced.
func (s *Service) renewalDue(app string, r *paas.Routing, now time.Time) bool {
	c := r.ACMECert
	if c == nil || now.Add(s.opts.ACME.RenewBefore).After(c.NotAfter) {
		return true
	}
	for _, n := range s.ACMENames(app, r) {
		if !Covers(c, n) {
			return true
		}
	}
	return false
}
