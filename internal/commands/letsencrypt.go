package commands

import (
	"context"
	"fmt"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
)

func (p *Platform) letsencryptCommands() []*Command {
	return []*Command{
		{Name: "letsencrypt:enable", Args: "APP", Help: "Obtain an ACME (Let's Encrypt) certificate for an app's names; it is renewed before it expires", App: true, Run: p.letsencryptEnable},
		{Name: "letsencrypt:disable", Args: "APP", Help: "Stop renewing an app's ACME certificate and remove it", App: true, Run: p.letsencryptDisable},
	}
}

func (p *Platform) letsencryptEnable(ctx context.Context, c *Call) error {
	r, err := p.RoutingStore.Routing(c.App.Name)
	if err != nil {
		return err
	}
	for _, d := range r.Domains {
		if strings.HasPrefix(d, "*.") {
			output.Step(c.Out, "%s is a wildcard: HTTP-01 cannot prove it; upload a certificate for it with certs:add", d)
		}
	}
	output.Step(c.Out, "Enabling Let's Encrypt for %s", c.App.Name)
	if err := p.Routing.Issue(ctx, c.App.Name, c.Out); err != nil {
		return fmt.Errorf("%s; nothing changed", sanitize(err.Error()))
	}
	if _, err := p.RoutingStore.UpdateRouting(c.App.Name, func(r *paas.Routing) error {
		r.LetsEncrypt = true
		return nil
	}); err != nil {
		return err
	}
	output.Step(c.Out, "%s is served over HTTPS; the certificate is renewed before it expires", c.App.Name)
	return nil
}

func (p *Platform) letsencryptDisable(ctx context.Context, c *Call) error {
	if err := p.updateAndPublish(ctx, c.App.Name, func(r *paas.Routing) { r.LetsEncrypt, r.ACMECert = false, nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Disabled Let's Encrypt for %s", c.App.Name)
	return nil
}
