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
	if len(strings.TrimSpace(string(data))) == 0 {
		return errors.New("no certificate on stdin: certs:add APP < cert-and-key.pem")
	}
	cert, err := routing.ParseCertKey(data, time.Now())
	if err != nil {
		return fmt.Errorf("%s; nothing changed", sanitize(err.Error()))
	}
	if _, err := p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
		r.Cert = cert
		return nil
	}); err != nil {
		return err
	}
	if err := p.Routing.Publish(ctx, c.App.Name); err != nil {
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
	if _, err := p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
		r.Cert = nil
		return nil
	}); err != nil {
		return err
	}
	if err := p.Routing.Publish(ctx, c.App.Name); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "-----> Removed certificate from %s\n", c.App.Name)
	return nil
}

func (p *Platform) certsReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	fields := []kv{{"Ssl enabled", fmt.Sprint(r.Cert != nil || r.ACMECert != nil)}}
	add := func(prefix string, cert *paas.Cert) {
		if cert == nil {
			fields = append(fields, kv{prefix + " hostnames", ""})
			return
		}
		verified := "self signed"
		if cert.Issuer != cert.Subject {
			verified = "issued by " + cert.Issuer
		}
		fields = append(fields,
			kv{prefix + " hostnames", strings.Join(cert.Names, " ")},
			kv{prefix + " subject", cert.Subject},
			kv{prefix + " issuer", cert.Issuer},
			kv{prefix + " starts at", cert.NotBefore.Format(time.RFC3339)},
			kv{prefix + " expires at", cert.NotAfter.Format(time.RFC3339)},
			kv{prefix + " verified", verified},
		)
	}
	add("Ssl", r.Cert)
	fields = append(fields, kv{"Letsencrypt enabled", fmt.Sprint(r.LetsEncrypt)})
	add("Letsencrypt", r.ACMECert)
	return report(c.Out, asJSON, c.App.Name+" ssl information", fields)
}
