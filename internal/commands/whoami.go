package commands

import (
	"context"
	"paas/internal/output"
	"strings"
)

// WhoamiCommands is whoami: who the session's key belongs to, and its groups.
func WhoamiCommands() []*Command {
	return []*Command{{Name: "whoami", Help: "Show who your key belongs to, where it was found, and your groups", Flags: formatFlag, Run: func(_ context.Context, c *Call) error {
		asJSON, err := wantJSON(c)
		if err != nil {
			return err
		}
		if asJSON {
			groups := c.ID.Groups
			if groups == nil {
				groups = []string{}
			}
			return output.JSON(c.Out, struct {
				Name   string   `json:"name"`
				Admin  bool     `json:"admin"`
				Source string   `json:"source"`
				Groups []string `json:"groups"`
			}{c.ID.Name, c.ID.Admin, c.ID.Source, groups})
		}
		admin := "false"
		if c.ID.Admin {
			admin = "true"
		}
		return report(c, false, sanitize(c.ID.Name), []kv{
			{"Name", c.ID.Name},
			{"Source", c.ID.Source},
			{"Admin", admin},
			{"Groups", strings.Join(c.ID.Groups, ", ")},
		})
	}}}
}
