package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// AccessStore changes apps' access lists.
type AccessStore interface {
	AddAccess(app, entry string) (*paas.App, error)
	RemoveAccess(app, entry string) (*paas.App, error)
}

// AccessCommands are acl:add, acl:remove and acl:list: an app's owner and
// administrators share it with users and @groups.
func AccessCommands(st AccessStore) []*Command {
	return []*Command{
		{Name: "acl:add", Args: "APP USER|@GROUP", Help: "Let a user, or the members of a directory group, use an app (owner and administrators)", App: true, MinArgs: 1,
			Run: changeAccess(st.AddAccess, "add %s to %s", "%s may use %s")},
		{Name: "acl:remove", Args: "APP USER|@GROUP", Help: "Take a user or @group off an app's access list (owner and administrators)", App: true, MinArgs: 1,
			Run: changeAccess(st.RemoveAccess, "remove %s from %s", "%s may no longer use %s")},
		{Name: "acl:list", Args: "APP", Help: "Show who may use an app (owner and administrators)", App: true, Flags: formatFlag, Run: func(_ context.Context, c *Call) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			if !auth.CanManageAccess(c.ID, c.App) {
				return errNotOwner(c.App.Name)
			}
			if asJSON {
				access := c.App.Access
				if access == nil {
					access = []string{}
				}
				return output.JSON(c.Out, struct {
					Owner  string   `json:"owner"`
					Access []string `json:"access"`
				}{c.App.Owner, access})
			}
			output.Header(c.Out, "%s access list (owner %s)", c.App.Name, sanitize(c.App.Owner))
			for _, e := range c.App.Access {
				fmt.Fprintln(c.Out, sanitize(e))
			}
			return nil
		}},
	}
}

// changeAccess runs one access-list change; failed and done are formats
// taking the entry and the app.
func changeAccess(change func(app, entry string) (*paas.App, error), failed, done string) func(context.Context, *Call) error {
	return func(_ context.Context, c *Call) error {
		entry, err := accessEntry(c)
		if err != nil {
			return err
		}
		if _, err := change(c.App.Name, entry); err != nil {
			return fmt.Errorf(failed+": %w", sanitize(entry), c.App.Name, err)
		}
		output.Step(c.Out, done, sanitize(entry), c.App.Name)
		return nil
	}
}

func errNotOwner(app string) error {
	return fmt.Errorf("only the owner of %s and administrators manage its access list", app)
}

// accessEntry checks the caller may manage the list and returns the entry argument.
func accessEntry(c *Call) (string, error) {
	if !auth.CanManageAccess(c.ID, c.App) {
		return "", errNotOwner(c.App.Name)
	}
	if len(c.Args) != 1 {
		return "", errors.New("give exactly one USER or @GROUP")
	}
	e := c.Args[0]
	if err := ValidateAccessEntry(e); err != nil {
		return "", err
	}
	return e, nil
}

// ValidateAccessEntry accepts a user name or @group name as the directory
// may spell it: printable UTF-8, no control characters, no leading or
// trailing space, at most 256 bytes.
func ValidateAccessEntry(e string) error {
	name := strings.TrimPrefix(e, "@")
	bad := name == "" || len(e) > 256 || !utf8.ValidString(e) || strings.TrimSpace(name) != name || strings.HasPrefix(name, "@")
	for _, r := range e {
		if r != ' ' && !unicode.IsPrint(r) {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("invalid user or @group %q: printable characters, no surrounding spaces, at most 256 bytes", sanitize(e))
	}
	return nil
}
