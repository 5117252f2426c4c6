package commands

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/internal/routing"
)

// maxCertInput bounds what certs:add reads from stdin.
const maxCertInput = 256 << 10

func (p *Platform) certCommands() []*Command {
	return []*Command{
		{Name: "certs:add", Args: "APP < cert-key.tar|cert-and-key.pem", Help: certsAddHelp, App: true, Run: p.certsAdd},
		{Name: "certs:update", Args: "APP < cert-key.tar|cert-and-key.pem", Help: "Replace an app's uploaded certificate, given as certs:add takes it", App: true, Run: p.certsAdd},
		{Name: "certs:generate", Args: "APP DOMAIN", Help: "Serve an app at DOMAIN over HTTPS with a new self-signed certificate (for tests and staging: browsers do not trust it)", App: true, MinArgs: 1, Run: p.certsGenerate},
		{Name: "certs:show", Args: "APP [crt]", Help: "Print the app's certificate chain (PEM); its private key is never shown", App: true, Run: p.certsShow},
		{Name: "certs:remove", Args: "APP", Help: "Remove an app's uploaded certificate", App: true, Run: p.certsRemove},
		{Name: "certs:report", Args: "APP", Help: "Show an app's certificates (never their keys)", App: true, Flags: formatFlag, Run: p.certsReport},
	}
}

// certsAddHelp says how a certificate reaches certs:add over SSH.
const certsAddHelp = "Serve an app over HTTPS with a certificate chain and its private key, on stdin: " +
	"Dokku's tar of server.crt and server.key (tar cf - server.crt server.key | ssh paas certs:add APP; gzipped too), " +
	"or the PEM files one after the other (cat server.crt server.key | ssh paas certs:add APP). " +
	"Dokku's certs:add APP CRT KEY names files on your machine, which paas cannot open over SSH: send them as above"

func (p *Platform) certsAdd(ctx context.Context, c *Call) error {
	if len(c.Args) > 0 {
		return fmt.Errorf("%s are files on your machine, which paas cannot open: send them on stdin, e.g.\n"+
			"tar cf - %s | ssh paas certs:add %s\nor\ncat %s | ssh paas certs:add %s",
			sanitize(strings.Join(c.Args, " ")), sanitize(strings.Join(c.Args, " ")), c.App.Name, sanitize(strings.Join(c.Args, " ")), c.App.Name)
	}
	if c.Stdin == nil {
		return errors.New("give the certificate chain and its key on stdin: certs:add APP < cert-key.tar (or the PEM files)")
	}
	data, err := io.ReadAll(io.LimitReader(c.Stdin, maxCertInput+1))
	if err != nil {
		return fmt.Errorf("read the certificate: %w", err)
	}
	if len(data) > maxCertInput {
		return refuse("more than %d KB on stdin: give the certificate chain and its key as PEM; nothing changed", maxCertInput>>10)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return errors.New("no certificate on stdin: certs:add APP < cert-key.tar (or cat server.crt server.key | ssh paas certs:add APP)")
	}
	if len(data) > maxCertInput {
		return fmt.Errorf("more than %d KB on stdin: give the certificate chain and its key only; nothing changed", maxCertInput>>10)
	}
	if data, err = certBundle(data); err != nil {
		return fmt.Errorf("%s; nothing changed", sanitize(err.Error()))
	}
	cert, err := routing.ParseCertKey(data, time.Now())
	if err != nil {
		return fmt.Errorf("%s; nothing changed", sanitize(err.Error()))
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Cert = cert }); err != nil {
		return err
	}
	output.Step(c.Out, "Added certificate for %s to %s (expires %s)", strings.Join(cert.Names, ", "), c.App.Name, cert.NotAfter.Format(time.RFC3339))
	p.sayUncovered(c, cert)
	return nil
}

// sayUncovered names the app's names the certificate does not cover.
func (p *Platform) sayUncovered(c *Call, cert *paas.Cert) {
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return
	}
	var uncovered []string
	for _, n := range append(p.defaultHosts(c.App.Name), r.Domains...) {
		if !routing.Covers(cert, n) {
			uncovered = append(uncovered, n)
		}
	}
	if len(uncovered) > 0 {
		output.Step(c.Out, "Not covered by this certificate (served over HTTP only): %s", strings.Join(uncovered, " "))
	}
}

func (p *Platform) certsRemove(ctx context.Context, c *Call) error {
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	if r.Cert == nil {
		return fmt.Errorf("%s has no uploaded certificate", c.App.Name)
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Cert = nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Removed certificate from %s", c.App.Name)
	return nil
}

func (p *Platform) certsReport(_ context.Context, c *Call) error {
	return p.routingReport(c, "ssl information", func(r *paas.Routing) []kv {
		fields := []kv{{"Ssl enabled", fmt.Sprint(r.Cert != nil || r.ACMECert != nil)}}
		fields = append(fields, certFields("Ssl", r.Cert)...)
		fields = append(fields, kv{"Letsencrypt enabled", fmt.Sprint(r.LetsEncrypt)})
		return append(fields, certFields("Letsencrypt", r.ACMECert)...)
	})
}

// certFields describes a certificate, never its key.
func certFields(prefix string, cert *paas.Cert) []kv {
	if cert == nil {
		return []kv{{prefix + " hostnames", ""}}
	}
	verified := "self signed"
	if cert.Issuer != cert.Subject {
		verified = "issued by " + cert.Issuer
	}
	return []kv{
		{prefix + " hostnames", strings.Join(cert.Names, " ")},
		{prefix + " subject", cert.Subject},
		{prefix + " issuer", cert.Issuer},
		{prefix + " starts at", cert.NotBefore.Format(time.RFC3339)},
		{prefix + " expires at", cert.NotAfter.Format(time.RFC3339)},
		{prefix + " verified", verified},
	}
}

// certBundle returns what certs:add was given as one PEM bundle: a tar
// (Dokku's server.crt and server.key, in any folder and under any names;
// gzipped too) becomes its files' certificates, in the archive's order,
// then their keys; anything else is taken as PEM. Only the archive's
// regular files are read, in memory: nothing is ever extracted.
func certBundle(data []byte) ([]byte, error) {
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: a gzip stream that cannot be read: %v", paas.ErrInvalidCert, err)
		}
		if data, err = io.ReadAll(io.LimitReader(zr, maxCertInput+1)); err != nil {
			return nil, fmt.Errorf("%w: a gzip stream that cannot be read: %v", paas.ErrInvalidCert, err)
		}
		if len(data) > maxCertInput {
			return nil, fmt.Errorf("%w: more than %d KB once unpacked", paas.ErrInvalidCert, maxCertInput>>10)
		}
	}
	if len(data) < 512 || string(data[257:262]) != "ustar" {
		return data, nil
	}
	var certs, keys bytes.Buffer
	blocks := 0
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: a tar archive that cannot be read: %v", paas.ErrInvalidCert, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue // folders, links: nothing of a certificate
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%w: a tar archive that cannot be read: %v", paas.ErrInvalidCert, err)
		}
		for rest := body; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			switch {
			case b.Type == "CERTIFICATE":
				blocks++
				pem.Encode(&certs, b)
			case b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY"):
				blocks++
				pem.Encode(&keys, b)
			}
		}
	}
	if blocks == 0 {
		return nil, fmt.Errorf("%w: the tar archive holds no PEM certificate or key (want server.crt and server.key)", paas.ErrInvalidCert)
	}
	return append(certs.Bytes(), keys.Bytes()...), nil
}

// certValidity is how long a certs:generate certificate is valid.
const certValidity = 365 * 24 * time.Hour

func (p *Platform) certsGenerate(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return errors.New("certs:generate takes one domain")
	}
	ds, err := p.parseDomains(c.App.Name, c.Args)
	if err != nil {
		return err
	}
	domain := ds[0]
	cert, err := selfSigned(domain, time.Now())
	if err != nil {
		return err
	}
	isDefault := slices.Contains(p.defaultHosts(c.App.Name), domain)
	_, err = p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
		if !isDefault && !slices.Contains(r.Domains, domain) {
			r.Domains = append(r.Domains, domain)
			slices.Sort(r.Domains)
		}
		r.Cert = cert
		return nil
	})
	if errors.Is(err, paas.ErrDomainTaken) {
		return fmt.Errorf("%s; nothing changed", err)
	}
	if err != nil {
		return err
	}
	if err := p.Routing.Publish(ctx, c.App.Name); err != nil {
		return err
	}
	output.Step(c.Out, "Generated a self-signed certificate for %s (expires %s); browsers will not trust it", domain, cert.NotAfter.Format(time.RFC3339))
	output.Step(c.Out, "%s serves %s over HTTPS; certs:show %s prints the certificate", c.App.Name, domain, c.App.Name)
	p.sayUncovered(c, cert)
	return nil
}

// selfSigned makes a certificate for domain signed by its own new ECDSA
// P-256 key, with the standard library's crypto.
func selfSigned(domain string, now time.Time) (*paas.Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain},
		DNSNames:              []string{domain},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign the certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode the key: %w", err)
	}
	bundle := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return routing.ParseCertKey(bundle, now)
}

func (p *Platform) certsShow(_ context.Context, c *Call) error {
	switch {
	case len(c.Args) > 1:
		return errors.New("certs:show takes at most one of crt")
	case len(c.Args) == 1 && c.Args[0] == "key":
		return errors.New("the private key is never shown: it stays with paas (certs:show APP prints the certificate chain)")
	case len(c.Args) == 1 && c.Args[0] != "crt":
		return fmt.Errorf("unknown part %q: certs:show APP [crt]", sanitize(c.Args[0]))
	}
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	cert := r.Cert
	if cert == nil {
		cert = r.ACMECert
	}
	if cert == nil {
		return fmt.Errorf("%s has no certificate (certs:add, certs:generate or letsencrypt:enable)", c.App.Name)
	}
	_, err = io.WriteString(c.Out, cert.CertPEM)
	return err
}
