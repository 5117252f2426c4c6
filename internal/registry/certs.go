package registry

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of Certificates.Dir.
const (
	CAFileName     = "ca.crt" // the CA every node trusts (/etc/docker/certs.d/HOST:PORT/ca.crt)
	caKeyFileName  = "ca.key"
	certFileName   = "server.crt"
	certKeyName    = "server.key"
	caValidity     = 10 * 365 * 24 * time.Hour
	certValidity   = 825 * 24 * time.Hour
	certRenewAhead = 90 * 24 * time.Hour
)

// Certificates are the installation's registry CA and the registry's server
// certificate, kept in Dir: ca.crt and ca.key (made once), server.crt and
// server.key (made again when they do not name every host or expire within
// 90 days).
type Certificates struct {
	Dir string
	// CA is ca.crt's PEM: what a client of the registry trusts.
	CA []byte
	// Server is the certificate the registry serves, chained to CA.
	Server tls.Certificate
}

// CAFile is the path of the CA's certificate.
func (c *Certificates) CAFile() string { return filepath.Join(c.Dir, CAFileName) }

// TLSConfig is the registry server's configuration: TLS 1.2 or later, the
// server certificate followed by the CA. Sending the CA costs a client
// nothing (it trusts its own copy or none) and lets a joining node fetch it
// from the handshake and check it against the SHA-256 that
// nodes:join-command printed (scripts/install.sh --join), as kubeadm's
// discovery hash does, instead of carrying the whole CA in the command.
func (c *Certificates) TLSConfig() *tls.Config {
	cert := c.Server
	if block, _ := pem.Decode(c.CA); block != nil && block.Type == "CERTIFICATE" {
		cert.Certificate = append(slices.Clip(cert.Certificate), block.Bytes)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
}

// LoadCertificates reads the CA and the server certificate from dir, making
// what is missing: the CA once, and a server certificate naming every one of
// hosts (IP addresses or DNS names) whenever the one there does not, or is
// about to expire. Keys are written owner-only.
func LoadCertificates(dir string, hosts []string) (*Certificates, error) {
	if len(hosts) == 0 {
		return nil, errors.New("registry certificate: no host to name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry certificate: %w", err)
	}
	ca, caKey, caPEM, err := loadOrMakeCA(dir)
	if err != nil {
		return nil, fmt.Errorf("registry CA: %w", err)
	}
	c := &Certificates{Dir: dir, CA: caPEM}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFileName), filepath.Join(dir, certKeyName))
	if err == nil && covers(cert.Leaf, ca, hosts) {
		c.Server = cert
		return c, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("registry certificate: %w", err)
	}
	if c.Server, err = makeServerCert(dir, ca, caKey, hosts); err != nil {
		return nil, fmt.Errorf("registry certificate: %w", err)
	}
	return c, nil
}

// covers reports whether leaf is signed by ca, names every host and stays
// valid long enough.
func covers(leaf, ca *x509.Certificate, hosts []string) bool {
	if leaf == nil || time.Until(leaf.NotAfter) < certRenewAhead || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, caKeyFileName)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s: not an ECDSA key", keyPath)
		}
		certPEM, err := os.ReadFile(certPath)
		if err != nil {
			return nil, nil, nil, err
		}
		return pair.Leaf, key, certPEM, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "paas registry CA", Organization: []string{"paas"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM, err := writePair(certPath, keyPath, der, key)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, certPEM, nil
}

// LoadClientCertificate reads the client certificate for name that dir's
// CA signed (base.crt and base.key in dir), making the CA and the
// certificate when missing, and the certificate again when it is not the
// CA's, names another or is about to expire. It returns the certificate
// and the CA's PEM.
func LoadClientCertificate(dir, base, name string) (tls.Certificate, []byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("client certificate: %w", err)
	}
	ca, caKey, caPEM, err := loadOrMakeCA(dir)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("client certificate CA: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil && cert.Leaf != nil && cert.Leaf.Subject.CommonName == name &&
		time.Until(cert.Leaf.NotAfter) >= certRenewAhead && cert.Leaf.CheckSignatureFrom(ca) == nil {
		return cert, caPEM, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, nil, fmt.Errorf("client certificate: %w", err)
	}
	tmpl := leafTemplate(name, x509.ExtKeyUsageClientAuth)
	if cert, err = issue(certPath, keyPath, tmpl, ca, caKey); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("client certificate: %w", err)
	}
	return cert, caPEM, nil
}

// leafTemplate is a certificate for name, for one use.
func leafTemplate(name string, use x509.ExtKeyUsage) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"paas"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{use},
	}
}

// issue makes a key, has ca sign tmpl for it and writes both.
func issue(certPath, keyPath string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := writePair(certPath, keyPath, der, key); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certPath, keyPath)
}

func makeServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (tls.Certificate, error) {
	tmpl := leafTemplate(hosts[0], x509.ExtKeyUsageServerAuth)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(filepath.Join(dir, certFileName), filepath.Join(dir, certKeyName), tmpl, ca, caKey)
}

// writePair writes a certificate (world-readable) and its key (owner-only),
// each through a temporary file and a rename, the key first.
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	return certPEM, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// writeFileAtomic writes data to path through a synced temporary file in the
// same directory and a rename, with mode perm. A file already holding data
// is left alone.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, perm)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
