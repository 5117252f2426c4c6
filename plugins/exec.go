package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// DefaultTimeout bounds one trigger run.
const DefaultTimeout = 2 * time.Minute

// execPath is the PATH executable plugins run with: they get a fixed, small
// environment, never paasd's own (which may hold credentials).
const execPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Dir runs executable plugins found under a directory.
type Dir struct {
	path    string
	timeout time.Duration
	env     []string
	log     *slog.Logger
}

// NewDir returns the plugins under path; a missing directory has no plugins.
func NewDir(path string, timeout time.Duration, log *slog.Logger) *Dir {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dir{path: path, timeout: timeout, log: log}
}

// WithEnv adds KEY=VALUE pairs to the environment of every plugin run (e.g.
// PAAS_NAME, PAAS_DATA_DIR) and returns d.
func (d *Dir) WithEnv(env ...string) *Dir {
	d.env = append(d.env, env...)
	return d
}

// Path is the plugins directory.
func (d *Dir) Path() string { return d.path }

// ExecPlugin is one plugin folder of the directory.
type ExecPlugin struct {
	Name     string
	Triggers []string // executables named after a known trigger
}

// Plugins lists the plugin folders in name order.
func (d *Dir) Plugins() ([]ExecPlugin, error) {
	if d.path == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugins dir: %w", err)
	}
	var out []ExecPlugin
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := ExecPlugin{Name: e.Name()}
		for _, t := range Triggers {
			if d.executable(p.Name, t.Name) {
				p.Triggers = append(p.Triggers, t.Name)
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (d *Dir) executable(plugin, trigger string) bool {
	fi, err := os.Stat(filepath.Join(d.path, plugin, trigger))
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Trigger runs every plugin's executable named name, in plugin name order, with
// args as its arguments. Output goes to out. A failure of a trigger that Stops
// ends the run at once with the plugin's message; others run every plugin.
func (d *Dir) Trigger(ctx context.Context, name string, args []string, out io.Writer) error {
	list, err := d.Plugins()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range list {
		if err := d.Run(ctx, p.Name, Event{Trigger: name, Args: args, Out: out}); err != nil {
			if Stops(name) {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run runs plugin's executable for ev.Trigger, if it has one: in the plugin's
// folder, with ev.Args as its arguments (no shell), stdin empty, stdout and
// stderr to ev.Out, killed after the timeout.
func (d *Dir) Run(ctx context.Context, plugin string, ev Event) error {
	if !d.executable(plugin, ev.Trigger) {
		return nil
	}
	out := ev.Out
	if out == nil {
		out = io.Discard
	}
	if err := d.exec(ctx, plugin, filepath.Join(d.path, plugin, ev.Trigger), ev.Args, ev, nil, out, out); err != nil {
		return fmt.Errorf("plugin %s: %s %w", plugin, ev.Trigger, err)
	}
	return nil
}

// exec runs exe with argv (no shell) in the plugin's folder, with a fixed
// environment describing ev, under the timeout; the error reads "timed out
// after D" or "failed: REASON".
func (d *Dir) exec(ctx context.Context, plugin, exe string, argv []string, ev Event, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, argv...)
	cmd.Dir = filepath.Join(d.path, plugin)
	cmd.Env = append([]string{
		"PATH=" + execPath,
		"LANG=C.UTF-8",
		"HOME=" + cmd.Dir,
		"PAAS_PLUGIN=" + plugin,
		"PAAS_TRIGGER=" + ev.Trigger,
		"PAAS_USER=" + ev.User.Name,
		"PAAS_ADMIN=" + strconv.FormatBool(ev.User.Admin),
	}, d.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		d.log.Warn("plugin timed out", "plugin", plugin, "trigger", ev.Trigger, "timeout", d.timeout)
		return fmt.Errorf("timed out after %s", d.timeout)
	}
	if err != nil {
		d.log.Warn("plugin failed", "plugin", plugin, "trigger", ev.Trigger, "err", err)
		return fmt.Errorf("failed: %w", err)
	}
	return nil
}
