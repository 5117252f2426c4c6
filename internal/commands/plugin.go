package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
)

// Triggers fires plugin triggers (plugins.Registry).
type Triggers interface {
	Trigger(ctx context.Context, name string, args []string, out io.Writer) error
}

// Plugins is what the plugin:* commands read and change (plugins.Registry).
type Plugins interface {
	List() ([]plugins.Info, error)
	SetEnabled(name string, on bool) error
}

var _ Plugins = (*plugins.Registry)(nil)

// PluginCommands returns plugin:list, plugin:enable and plugin:disable.
func PluginCommands(reg Plugins) []*Command {
	return []*Command{
		{Name: "plugin:list", Help: "List the plugins, built in and installed, enabled or not", Flags: formatFlag, Run: func(_ context.Context, c *Call) error {
			return pluginList(c, reg)
		}},
		{Name: "plugin:enable", Args: "NAME", Help: "Enable a plugin: its triggers run and its commands work", Admin: true, MinArgs: 1, Run: func(_ context.Context, c *Call) error {
			return setPlugin(c, reg, true)
		}},
		{Name: "plugin:disable", Args: "NAME", Help: "Disable a plugin: its triggers are skipped and its commands refuse to run", Admin: true, MinArgs: 1, Run: func(_ context.Context, c *Call) error {
			return setPlugin(c, reg, false)
		}},
	}
}

func pluginList(c *Call, reg Plugins) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	list, err := reg.List()
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, list)
	}
	output.Header(c.Out, "Plugins")
	width := 0
	for _, p := range list {
		width = max(width, len(p.Name))
	}
	for _, p := range list {
		state := "enabled"
		if !p.Enabled {
			state = "disabled"
		}
		var what []string
		if len(p.Triggers) > 0 {
			what = append(what, "triggers: "+strings.Join(p.Triggers, " "))
		}
		if len(p.Commands) > 0 {
			what = append(what, fmt.Sprintf("%d commands", len(p.Commands)))
		}
		fmt.Fprintf(c.Out, "    %-*s  %-10s  %-8s  %s", width, sanitize(p.Name), p.Kind, state, sanitize(p.Description))
		if len(what) > 0 {
			fmt.Fprintf(c.Out, " (%s)", strings.Join(what, "; "))
		}
		fmt.Fprintln(c.Out)
	}
	return nil
}

func setPlugin(c *Call, reg Plugins, on bool) error {
	name := c.Args[0]
	if err := reg.SetEnabled(name, on); err != nil {
		return fmt.Errorf("%s", sanitize(err.Error()))
	}
	verb := "Enabled"
	if !on {
		verb = "Disabled"
	}
	output.Step(c.Out, "%s plugin %s", verb, name)
	return nil
}

// FromPlugins turns plugin commands into dispatcher commands: the dispatcher
// parses their flags and applies Admin and App exactly as for built-in ones.
func FromPlugins(cmds []plugins.Command) []*Command {
	out := make([]*Command, 0, len(cmds))
	for _, pc := range cmds {
		run := pc.Run
		out = append(out, &Command{
			Name: pc.Name, Args: pc.Args, Help: pc.Help, Flags: pc.Flags,
			App: pc.App, Admin: pc.Admin, MinArgs: pc.MinArgs,
			Run: func(ctx context.Context, c *Call) error {
				return run(plugins.WithUser(ctx, c.ID), &plugins.Call{
					ID: c.ID, App: c.App, Args: c.Args, Flags: c.Flags,
					Stdin: c.Stdin, Out: c.Out, Err: c.Err,
				})
			},
		})
	}
	return out
}

// WithTriggers makes the given built-in commands fire the plugin triggers
// around them: pre-delete and post-delete around apps:destroy,
// post-config-update after config:set and config:unset.
func WithTriggers(cmds []*Command, t Triggers) []*Command {
	for _, c := range cmds {
		run := c.Run
		switch c.Name {
		case "apps:destroy":
			c.Run = func(ctx context.Context, call *Call) error {
				if !call.Has("--force") {
					return run(ctx, call)
				}
				ctx = plugins.WithUser(ctx, call.ID)
				app := []string{call.App.Name}
				if err := t.Trigger(ctx, plugins.TriggerPreDelete, app, call.Out); err != nil {
					return fmt.Errorf("%s refused: %w", plugins.TriggerPreDelete, err)
				}
				if err := run(ctx, call); err != nil {
					return err
				}
				if err := t.Trigger(ctx, plugins.TriggerPostDelete, app, call.Out); err != nil {
					output.Warn(call.Err, "%s: %s", plugins.TriggerPostDelete, sanitize(err.Error()))
				}
				return nil
			}
		case "apps:rename", "apps:clone":
			trigger := plugins.TriggerPostAppRename
			if c.Name == "apps:clone" {
				trigger = plugins.TriggerPostAppClone
			}
			c.Run = func(ctx context.Context, call *Call) error {
				if err := run(ctx, call); err != nil || len(call.Args) == 0 {
					return err
				}
				if err := t.Trigger(plugins.WithUser(ctx, call.ID), trigger, []string{call.App.Name, call.Args[0]}, call.Out); err != nil {
					output.Warn(call.Err, "%s: %s", trigger, sanitize(err.Error()))
				}
				return nil
			}
		case "config:set", "config:unset", "config:clear", "config:import":
			op := strings.TrimPrefix(c.Name, "config:")
			c.Run = func(ctx context.Context, call *Call) error {
				if err := run(ctx, call); err != nil || call.App == nil {
					return err // the global config fires nothing (as Dokku's)
				}
				args := []string{call.App.Name, op}
				switch op {
				case "import":
					args[1] = "set" // Dokku's operation name; the keys came on stdin
				case "set", "unset":
					for _, a := range call.Args {
						k, _, _ := strings.Cut(a, "=")
						args = append(args, k)
					}
				}
				if err := t.Trigger(plugins.WithUser(ctx, call.ID), plugins.TriggerPostConfigUpdate, args, call.Out); err != nil {
					output.Warn(call.Err, "%s: %s", plugins.TriggerPostConfigUpdate, sanitize(err.Error()))
				}
				return nil
			}
		}
	}
	return cmds
}

// CommandRunner runs one SSH command (the Dispatcher).
type CommandRunner interface {
	RunCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

var _ CommandRunner = (*Dispatcher)(nil)

// UserAuth fires user-auth (USER COMMAND ARGS...) before every command; a
// failing plugin refuses the command with its message.
type UserAuth struct {
	Next     CommandRunner
	Triggers Triggers
}

// RunCommand implements CommandRunner.
func (u *UserAuth) RunCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	targs := append([]string{id.Name}, args...)
	if len(args) == 0 {
		targs = append(targs, "help")
	}
	if err := u.Triggers.Trigger(plugins.WithUser(ctx, id), plugins.TriggerUserAuth, targs, stderr); err != nil {
		return fail(stderr, fmt.Errorf("permission denied: %s", sanitize(err.Error())))
	}
	return u.Next.RunCommand(ctx, id, args, stdin, stdout, stderr)
}

// PluginApps gives plugins the apps with the caller's rights (plugins.Apps).
type PluginApps struct {
	Store    AppStore
	Pipeline Pipeline
}

var _ plugins.Apps = (*PluginApps)(nil)

// App returns an app id may use; one id may not use reads as missing (exit 20).
func (a *PluginApps) App(id paas.Identity, name string) (*paas.App, error) {
	if err := paas.ValidateAppName(name); err != nil {
		return nil, err
	}
	app, err := a.Store.App(name)
	if (err == nil && !auth.CanUseApp(id, app)) || errors.Is(err, paas.ErrAppNotFound) {
		return nil, notFound(name)
	}
	return app, err
}

// SetConfig changes an app's config and rolls it out as a new release.
func (a *PluginApps) SetConfig(ctx context.Context, app string, who paas.Identity, reason string, fn func(map[string]string) error, out io.Writer) error {
	return a.Pipeline.SetConfig(ctx, app, who, reason, true, fn, out)
}

// Link changes an app's config and its linked networks, and rolls both out
// as a new release.
func (a *PluginApps) Link(ctx context.Context, app string, who paas.Identity, reason, network string, link bool, fn func(map[string]string) error, out io.Writer) error {
	return a.Pipeline.SetConfig(ctx, app, who, reason, true, fn, out, func(app *paas.App) {
		linked := slices.DeleteFunc(slices.Clone(app.Network.Linked), func(n string) bool { return n == network })
		if link {
			linked = append(linked, network)
		}
		app.Network.Linked = linked
	})
}
