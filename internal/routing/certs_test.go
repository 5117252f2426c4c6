package routing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

func certKey(t *testing.T, notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, DNSNames: names, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

func TestParseCertKey(t *testing.T) {
	now := time.Now()
	cert, key := certKey(t, now.Add(-time.Hour), now.Add(time.Hour), "app.example.com", "*.preview.example.com")
	_, otherKey := certKey(t, now.Add(-time.Hour), now.Add(time.Hour), "app.example.com")
	expired, expiredKey := certKey(t, now.Add(-2*time.Hour), now.Add(-time.Hour), "app.example.com")
	future, futureKey := certKey(t, now.Add(time.Hour), now.Add(2*time.Hour), "app.example.com")
	noNames, noNamesKey := certKey(t, now.Add(-time.Hour), now.Add(time.Hour))
	for _, tc := range []struct {
		name, in, err string
	}{
		{"cert then key", cert + key, ""},
		{"key then cert, with blank lines", "\n" + key + "\n\n" + cert + "\n", ""},
		{"key of another certificate", cert + otherKey, "does not match the private key"},
		{"expired", expired + expiredKey, "expired on"},
		{"not yet valid", future + futureKey, "not valid before"},
		{"no DNS name", noNames + noNamesKey, "names no DNS name"},
		{"no key", cert, "no PRIVATE KEY block"},
		{"no certificate", key, "no CERTIFICATE block"},
		{"two keys", cert + key + otherKey, "2 private keys"},
		{"not PEM", "hello", "malformed PEM: no certificate or key"},
		{"empty", "", "malformed PEM"[:0] + "no CERTIFICATE block"},
		{"trailing garbage", cert + key + "garbage", "data after the last PEM block"},
		{"bad base64 in a block", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n" + key, "malformed PEM"},
		{"DER that is not a certificate", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")})) + key, "malformed certificate"},
		{"other block type", cert + key + "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", `unexpected PEM block "PUBLIC KEY"`},
		{"too large", strings.Repeat("a", maxPEM+1), "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCertKey([]byte(tc.in), now)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if strings.Join(got.Names, " ") != "app.example.com *.preview.example.com" || got.KeyPEM == "" || !strings.HasPrefix(got.CertPEM, "-----BEGIN CERTIFICATE-----") {
					t.Errorf("got %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, paas.ErrInvalidCert) {
				t.Errorf("error %v, want an ErrInvalidCert saying %q", err, tc.err)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	c := &paas.Cert{Names: []string{"app.example.com", "*.preview.example.com"}}
	for host, want := range map[string]bool{
		"app.example.com": true, "pr-1.preview.example.com": true,
		"preview.example.com": false, "a.b.preview.example.com": false, "other.example.com": false,
	} {
		if got := Covers(c, host); got != want {
			t.Errorf("Covers(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestRenewalDue(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := New(nil, st, Options{Domain: "paas.test"})
	now := time.Now()
	valid := &paas.Cert{Names: []string{"web.paas.test", "app.example.com"}, NotAfter: now.Add(60 * 24 * time.Hour)}
	for _, tc := range []struct {
		name string
		r    *paas.Routing
		want bool
	}{
		{"no certificate yet", &paas.Routing{LetsEncrypt: true}, true},
		{"valid for 60 days", &paas.Routing{Domains: []string{"app.example.com"}, ACMECert: valid}, false},
		{"expires in 20 days", &paas.Routing{ACMECert: &paas.Cert{Names: valid.Names, NotAfter: now.Add(20 * 24 * time.Hour)}}, true},
		{"a name was added", &paas.Routing{Domains: []string{"app.example.com", "new.example.com"}, ACMECert: valid}, true},
		{"wildcards are not ACME's", &paas.Routing{Domains: []string{"app.example.com", "*.x.example.com"}, ACMECert: valid}, false},
	} {
		if got := s.renewalDue("web", tc.r, now); got != tc.want {
			t.Errorf("%s: renewalDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}
