package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"paas/internal/paas"
	"paas/internal/routing"
)

// maxCertInput bounds what certs:add reads from stdin.
const maxCertInput = 256 << 10

func (p *Platform) certCommands() []*Command {
	return []*Command{
		{Name: "certs:add", Args: "APP < cert-and-key.pem", Help: "Serve an app over HTTPS with an uploaded certificate chain and its private key (PEM on stdin)", App: true, Run: p.certsAdd},
		{Name: "certs:update", Args: "APP < cert-and-key.pem", Help: "Replace an app's uploaded certificate (PEM on stdin)", App: true, Run: p.certsAdd},
		{Name: "certs:remove", Args: "APP", Help: "Remove an app's uploaded certificate", App: true, Run: p.certsRemove},
		{Name: "certs:report", Args: "APP", Help: "Show an app's certificates (never their keys)", App: true, Flags: formatFlag, Run: p.certsReport},
	}
}

func (p *Platform) certsAdd(ctx context.Context, c *Call) error {
	if c.Stdin == nil {
		return errors.New("give the certificate chain and its key as PEM on stdin: certs:add APP < cert-and-key.pem")
	}
	data, err := io.ReadAll(io.LimitReader(c.Stdin, maxCertInput+1))
	if err != nil {
		return fmt.Errorf("read the certificate: %w", err)
	}
	if len(data) > maxCertInput {
		return refuse("more than %d KB on stdin: give the certificate chain and its key as PEM; nothing changed", maxCertInput>>10)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return errors.New("no certificate on stdin: certs:add APP < cert-and-key.pem")
	}
	cert, err := routing.ParseCertKey(data, time.Now())
	if err != nil {
		return fmt.Errorf("%s; nothing changed", sanitize(err.Error()))
	}
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.Cert = cert }); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Added certificate for %s to %s (expires %s)\n", strings.Join(cert.Names, ", "), c.App.Name, cert.NotAfter.Format(time.RFC3339))
	if r, err := p.RoutingStore.Routing(c.App.Name); err == nil {
		names := append([]string{p.Routing.DefaultHost(c.App.Name)}, r.Domains...)
		var uncovered []string
		for _, n := range names {
			if !routing.Covers(cert, n) {
				uncovered = append(uncovered, n)
			}
		}
		if len(uncovered) > 0 {
			fmt.Fprintf(c.Out, "-----> Not covered by this certificate (served over HTTP only): %s\n", strings.Join(uncovered, " "))
		}
	}
	return nil
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
	fmt.Fprintf(c.Out, "-----> Removed certificate from %s\n", c.App.Name)
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
