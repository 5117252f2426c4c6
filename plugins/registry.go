package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"runtime/debug"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Kinds of plugins in Info.
const (
	KindBuiltin    = "builtin"
	KindExecutable = "executable"
)

// Info describes a plugin for plugin:list.
type Info struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Enabled     bool     `json:"enabled"`
	Description string   `json:"description"`
	Triggers    []string `json:"triggers"`
	Commands    []string `json:"commands"`
}

// Registry holds the Go plugins and the plugins directory, and fires triggers
// on both: Go plugins first, in registration order, then executables in name
// order. A disabled plugin runs no trigger and its commands refuse to run.
type Registry struct {
	dir     *Dir
	state   Data // "disabled/NAME" keys; nil keeps everything enabled
	log     *slog.Logger
	mu      sync.RWMutex
	plugins []Plugin
}

// NewRegistry returns a registry over the executable plugins of dir (nil for
// none) that keeps enabled/disabled state in state.
func NewRegistry(dir *Dir, state Data, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if dir == nil {
		dir = NewDir("", 0, log)
	}
	return &Registry{dir: dir, state: state, log: log}
}

var pluginNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Register adds Go plugins. Names are unique; a command must be named
// "PLUGIN:subcommand" after its plugin.
func (r *Registry) Register(ps ...Plugin) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		name := p.Name()
		if !pluginNameRe.MatchString(name) {
			return fmt.Errorf("register plugin %q: use lowercase letters, digits, - and _", name)
		}
		if slices.ContainsFunc(r.plugins, func(o Plugin) bool { return o.Name() == name }) {
			return fmt.Errorf("register plugin %s: already registered", name)
		}
		if c, ok := p.(Commander); ok {
			for _, cmd := range c.Commands() {
				if len(cmd.Name) <= len(name)+1 || cmd.Name[:len(name)+1] != name+":" || cmd.Run == nil {
					return fmt.Errorf("register plugin %s: command %q must be named %s:SUBCOMMAND and have a Run", name, cmd.Name, name)
				}
			}
		}
		r.plugins = append(r.plugins, p)
	}
	return nil
}

func (r *Registry) builtins() []Plugin {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.plugins)
}

// Enabled reports whether the plugin name is enabled.
func (r *Registry) Enabled(name string) (bool, error) {
	if r.state == nil {
		return true, nil
	}
	v, err := r.state.Get("disabled/" + name)
	if err != nil {
		return false, fmt.Errorf("read plugin state: %w", err)
	}
	return v == nil, nil
}

// SetEnabled enables or disables the plugin name; ErrNotFound when there is
// no such plugin.
func (r *Registry) SetEnabled(name string, on bool) error {
	list, err := r.List()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list, func(i Info) bool { return i.Name == name }) {
		return NotFound("Plugin", name)
	}
	if r.state == nil {
		return errors.New("plugin state is not kept by this installation")
	}
	return r.state.Update("disabled/"+name, func([]byte) ([]byte, error) {
		if on {
			return nil, nil
		}
		return []byte("1"), nil
	})
}

// List describes every plugin: Go plugins first, then executables.
func (r *Registry) List() ([]Info, error) {
	var out []Info
	for _, p := range r.builtins() {
		info := Info{Name: p.Name(), Kind: KindBuiltin, Description: p.Description(), Triggers: []string{}, Commands: []string{}}
		if h, ok := p.(Hooker); ok {
			for t := range h.Hooks() {
				info.Triggers = append(info.Triggers, t)
			}
			sort.Strings(info.Triggers)
		}
		if c, ok := p.(Commander); ok {
			for _, cmd := range c.Commands() {
				info.Commands = append(info.Commands, cmd.Name)
			}
		}
		out = append(out, info)
	}
	execs, err := r.dir.Plugins()
	if err != nil {
		return nil, err
	}
	cmds, err := r.dir.Commands()
	if err != nil {
		return nil, err
	}
	for _, e := range execs {
		info := Info{Name: e.Name, Kind: KindExecutable, Description: "executables in " + r.dir.Path() + "/" + e.Name, Triggers: nonNil(e.Triggers), Commands: []string{}}
		for _, c := range cmds {
			if c.Plugin == e.Name {
				info.Commands = append(info.Commands, c.Name)
			}
		}
		out = append(out, info)
	}
	for i := range out {
		on, err := r.Enabled(out[i].Name)
		if err != nil {
			return nil, err
		}
		out[i].Enabled = on
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type userKey struct{}

// WithUser returns ctx carrying who a trigger fires for (a request-scoped
// value): Trigger passes it to plugins as Event.User and PAAS_USER.
func WithUser(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, userKey{}, id)
}

func userFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(userKey{}).(Identity)
	return id
}

// Trigger fires name with args, output to out, for the user in ctx (WithUser).
// It is what the pipeline and the commands call.
func (r *Registry) Trigger(ctx context.Context, name string, args []string, out io.Writer) error {
	return r.Fire(ctx, Event{Trigger: name, Args: args, User: userFrom(ctx), Out: out})
}

// Fire runs ev on every enabled plugin that handles it. A trigger that Stops
// ends at the first failure; for the others every plugin runs and the
// failures are joined. A panicking Go plugin is a failure, not a crash.
func (r *Registry) Fire(ctx context.Context, ev Event) error {
	if ev.Out == nil {
		ev.Out = io.Discard
	}
	var errs []error
	fail := func(err error) bool {
		errs = append(errs, err)
		return Stops(ev.Trigger)
	}
	for _, p := range r.builtins() {
		h, ok := p.(Hooker)
		if !ok {
			continue
		}
		fn := h.Hooks()[ev.Trigger]
		if fn == nil {
			continue
		}
		if on, err := r.Enabled(p.Name()); err != nil || !on {
			continue
		}
		if err := r.callHook(ctx, p.Name(), fn, ev); err != nil && fail(err) {
			return err
		}
	}
	execs, err := r.dir.Plugins()
	if err != nil {
		if fail(err) {
			return err
		}
	}
	for _, e := range execs {
		if on, err := r.Enabled(e.Name); err != nil || !on {
			continue
		}
		if err := r.dir.Run(ctx, e.Name, ev); err != nil && fail(err) {
			return err
		}
	}
	return errors.Join(errs...)
}

func (r *Registry) callHook(ctx context.Context, plugin string, fn HookFunc, ev Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			r.log.Error("plugin panicked", "plugin", plugin, "trigger", ev.Trigger, "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("plugin %s: %s failed: internal error", plugin, ev.Trigger)
		}
	}()
	if err := fn(ctx, ev); err != nil {
		r.log.Warn("plugin trigger failed", "plugin", plugin, "trigger", ev.Trigger, "err", err)
		return fmt.Errorf("plugin %s: %s: %w", plugin, ev.Trigger, err)
	}
	return nil
}

// Commands returns the commands of every Go plugin and executable plugin:
// GoCommands, then ExecCommands.
func (r *Registry) Commands() []Command {
	return append(r.GoCommands(), r.ExecCommands()...)
}

// GoCommands returns the commands of the Go plugins. Each refuses to run
// while its plugin is disabled, and a panic in one is reported as a failure.
func (r *Registry) GoCommands() []Command {
	var out []Command
	for _, p := range r.builtins() {
		if c, ok := p.(Commander); ok {
			for _, cmd := range c.Commands() {
				out = append(out, r.guard(p.Name(), cmd))
			}
		}
	}
	return out
}

// ExecCommands returns the commands of the executable plugins, read from
// the plugins directory now (a command added or removed there counts at
// once), except those a Go plugin has. Each refuses to run while its plugin
// is disabled.
func (r *Registry) ExecCommands() []Command {
	execs, err := r.dir.Commands()
	if err != nil {
		r.log.Error("read executable plugin commands", "err", err)
	}
	taken := map[string]bool{}
	for _, p := range r.builtins() {
		if c, ok := p.(Commander); ok {
			for _, cmd := range c.Commands() {
				taken[cmd.Name] = true
			}
		}
	}
	var out []Command
	for _, c := range execs {
		if taken[c.Name] {
			r.log.Warn("executable plugin command ignored: a Go plugin has it", "command", c.Name)
			continue
		}
		out = append(out, r.guard(c.Plugin, c.Command))
	}
	return out
}

func (r *Registry) guard(plugin string, cmd Command) Command {
	run, name := cmd.Run, cmd.Name
	cmd.Run = func(ctx context.Context, call *Call) (err error) {
		on, err := r.Enabled(plugin)
		if err != nil {
			return err
		}
		if !on {
			return fmt.Errorf("plugin %s is disabled (plugin:enable %s)", plugin, plugin)
		}
		defer func() {
			if v := recover(); v != nil {
				r.log.Error("plugin command panicked", "plugin", plugin, "command", name, "panic", v, "stack", string(debug.Stack()))
				err = fmt.Errorf("%s failed: internal error", name)
			}
		}()
		return run(ctx, call)
	}
	return cmd
}

// Run runs the background work of every Go plugin that has some, until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, p := range r.builtins() {
		if rn, ok := p.(Runner); ok {
			g.Go(func() error { return rn.Run(ctx) })
		}
	}
	return g.Wait()
}
