package routing

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"paas/internal/paas"
)

// maxPEM bounds an uploaded certificate and key.
const maxPEM = 256 << 10

// ParseCertKey reads a PEM certificate chain (leaf first) and its private key
// from data, in any order, and checks them: the key must match the leaf, the
// leaf must be valid at now and name at least one DNS name. Every error says
// what is wrong and wraps paas.ErrInvalidCert.
func ParseCertKey(data []byte, now time.Time) (*paas.Cert, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", paas.ErrInvalidCert, fmt.Sprintf(format, args...))
	}
	if len(data) > maxPEM {
		return nil, bad("more than %d KB of PEM", maxPEM>>10)
	}
	var certs, keys []*pem.Block
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certs = append(certs, b)
		case b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY"):
			keys = append(keys, b)
		default:
			return nil, bad("unexpected PEM block %q: give the certificate chain and its private key", b.Type)
		}
	}
	if n := bytes.Count(data, []byte("-----BEGIN ")); n > len(certs)+len(keys) {
		return nil, bad("malformed PEM: %d of %d blocks could not be decoded", n-len(certs)-len(keys), n)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if len(certs)+len(keys) == 0 {
			return nil, bad("malformed PEM: no certificate or key found")
		}
		return nil, bad("malformed PEM: data after the last PEM block that is not PEM")
	}
	switch {
	case len(certs) == 0:
		return nil, bad("no CERTIFICATE block found")
	case len(keys) == 0:
		return nil, bad("no PRIVATE KEY block found")
	case len(keys) > 1:
		return nil, bad("%d private keys found; give exactly one", len(keys))
	}
	var certPEM bytes.Buffer
	for _, c := range certs {
		if _, err := x509.ParseCertificate(c.Bytes); err != nil {
			return nil, bad("malformed certificate: %v", err)
		}
		_ = pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: c.Bytes})
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: keys[0].Type, Bytes: keys[0].Bytes})
	pair, err := tls.X509KeyPair(certPEM.Bytes(), keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, bad("the certificate does not match the private key")
		}
		return nil, bad("%s", strings.TrimPrefix(err.Error(), "tls: "))
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, bad("malformed certificate: %v", err)
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, bad("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, bad("the certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case len(leaf.DNSNames) == 0:
		return nil, bad("the certificate names no DNS name (subjectAltName)")
	}
	return &paas.Cert{
		CertPEM:   certPEM.String(),
		KeyPEM:    string(keyPEM),
		Names:     leaf.DNSNames,
		Subject:   leaf.Subject.String(),
		Issuer:    leaf.Issuer.String(),
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
		AddedAt:   now.UTC(),
	}, nil
}

// Covers reports whether the certificate is valid for host (exact or
// wildcard name).
func Covers(c *paas.Cert, host string) bool {
	for _, n := range c.Names {
		if n == host {
			return true
		}
		if parent, ok := strings.CutPrefix(n, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == parent {
				return true
			}
		}
	}
	return false
}
