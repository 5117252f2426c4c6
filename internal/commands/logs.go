package commands

import (
	"context"
	"errors"
	"io"

	"paas/internal/output"
	"paas/internal/paas"
)

func (p *Platform) logsCommands() []*Command {
	return []*Command{
		{Name: "logs:failed", Args: "APP|--all", Help: "Print the output of the app's last failed deploy (--all: of every app of yours)", NamesApp: true,
			Flags: map[string]bool{"--all": false}, Run: p.logsFailed},
	}
}

func (p *Platform) logsFailed(_ context.Context, c *Call) error {
	if c.Has("--all") {
		if len(c.Args) > 0 {
			return errors.New("give an app or --all, not both")
		}
		apps, err := p.visibleApps(c.ID)
		if err != nil {
			return err
		}
		for _, a := range apps {
			if err := p.printFailed(c.Out, c.Err, a.Name); err != nil {
				return err
			}
		}
		return nil
	}
	if len(c.Args) != 1 {
		return errors.New("please specify an app name or --all\n Usage: logs:failed APP|--all")
	}
	app, err := usableApp(p.Store, c.ID, c.Args[0])
	if err != nil {
		return err
	}
	return p.printFailed(c.Out, c.Err, app.Name)
}

// printFailed writes the log of the app's last failed deploy, Dokku's way:
// a header, then the output; a warning when no deploy failed.
func (p *Platform) printFailed(out, errw io.Writer, app string) error {
	deploys, err := p.Store.Deploys(app)
	if err != nil {
		return err
	}
	output.Header(out, "%s failed deploy logs", app)
	for _, d := range deploys { // newest first
		if d.State == paas.DeployFailed {
			output.Step(out, "Deploy %d (%s, %s) failed: %s", d.ID, d.Reason, d.StartedAt.UTC().Format("2006-01-02 15:04:05"), sanitize(d.Error))
			_, err := io.WriteString(out, d.Log)
			return err
		}
	}
	output.Warn(errw, "No failed deploy found for %s", app)
	return nil
}
