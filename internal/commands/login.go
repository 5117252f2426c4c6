package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
)

// LoginLinks issues one-time sign-in links to the dashboard (signin.Service).
type LoginLinks interface {
	IssueLink(id paas.Identity) (link string, expires time.Time, err error)
}

// LoginCommands is `login`: a link that signs the key's user in to the
// dashboard once, within 60 s. links nil: the installation serves no
// dashboard, and the command says so.
func LoginCommands(links LoginLinks) []*Command {
	return []*Command{{
		Name: "login", Help: "Print a one-time link that signs you in to the dashboard (valid 60 s, once)",
		Flags: formatFlag,
		Details: "The link signs in the user of your SSH key, with the same rights (administrator, groups).\n" +
			"Open it within 60 seconds; it works once. Do not share it: it is a password for one use.",
		Run: func(_ context.Context, c *Call) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			if links == nil {
				return errors.New("this installation serves no dashboard")
			}
			link, expires, err := links.IssueLink(c.ID)
			if err != nil {
				return fmt.Errorf("issue a sign-in link: %w", err)
			}
			if asJSON {
				return output.JSON(c.Out, struct {
					URL     string    `json:"url"`
					User    string    `json:"user"`
					Expires time.Time `json:"expires"`
				}{link, c.ID.Name, expires.UTC()})
			}
			output.Step(c.Out, "Sign-in link for %s (valid 60 s, once):", sanitize(c.ID.Name))
			fmt.Fprintln(c.Out, link)
			return nil
		},
	}}
}
