package commands

import (
	"bufio"
	"context"
	"errors"
	"io"
	"paas/internal/output"
	"sort"
	"strings"
)

func (b *Builds) registryCommands() []*Command {
	return []*Command{
		{Name: "registry:login", Args: "SERVER USER < password", Help: "Store credentials for a registry (the password is read from stdin)", Admin: true, MinArgs: 2, Run: b.registryLogin},
		{Name: "registry:report", Help: "List the registries paas has credentials for", Admin: true, Flags: formatFlag, Run: b.registryReport},
		{Name: "repo:purge-cache", Args: "APP", Help: "Drop an app's build cache; the next build starts cold", App: true, Run: b.repoPurgeCache},
	}
}

// maxPasswordInput bounds the registry password registry:login reads (a
// registry token is well under it).
const maxPasswordInput = 8 << 10

func (b *Builds) registryLogin(ctx context.Context, c *Call) error {
	server, user := c.Args[0], c.Args[1]
	if c.Stdin == nil {
		return errors.New("give the password on stdin")
	}
	line, err := bufio.NewReader(io.LimitReader(c.Stdin, maxPasswordInput+1)).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("give the password on stdin")
	}
	if len(line) > maxPasswordInput {
		return refuse("the password on stdin is longer than %d KB", maxPasswordInput>>10)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return errors.New("give the password on stdin")
	}
	// Refused credentials are not stored: a wrong password shows now, not
	// at the first deploy that needs it.
	if err := b.Logins.Check(ctx, server, user, password); err != nil {
		return err
	}
	if err := b.Logins.Login(server, user, password); err != nil {
		return err
	}
	output.Step(c.Out, "Logged in to %s as %s", sanitize(server), sanitize(user))
	return nil
}

func (b *Builds) registryReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	servers, err := b.Logins.Servers()
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, servers)
	}
	names := make([]string, 0, len(servers))
	for s := range servers {
		names = append(names, s)
	}
	sort.Strings(names)
	output.Header(c.Out, "Registry logins")
	for _, s := range names {
		output.Detail(c.Out, "%s (%s)", sanitize(s), sanitize(servers[s]))
	}
	return nil
}

func (b *Builds) repoPurgeCache(ctx context.Context, c *Call) error {
	return b.Pipeline.Locked(ctx, c.App.Name, c.Out, func() error {
		if err := b.Cache.PurgeCache(ctx, c.App.Name); err != nil {
			return err
		}
		output.Step(c.Out, "Purged the build cache of %s", c.App.Name)
		return nil
	})
}
