package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"text/tabwriter"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// OneOffs runs one-off tasks (run, run:*).
type OneOffs interface {
	// Run runs a task attached to the caller's streams and returns its exit code.
	Run(ctx context.Context, rel *paas.Release, opts scheduler.RunOptions) (int, error)
	// Detach starts a task that runs on its own and returns its name.
	Detach(ctx context.Context, rel *paas.Release, opts scheduler.RunOptions) (string, error)
	OneOffs(ctx context.Context, app string) ([]scheduler.OneOff, error)
	OneOffLogs(ctx context.Context, app string, opts scheduler.OneOffLogOptions, w io.Writer) error
	StopOneOffs(ctx context.Context, app, name string) ([]string, error)
}

var envFlags = map[string]bool{"-e": true, "--env": true}

const runDetails = `The task runs the current release's image with the app's config (and the
-e|--env values, for this task only) on the app's networks, and is removed when it
exits. Everything after the app and the command's first word belongs to the
command, flags included; "--" ends paas's own flags explicitly.

The command is run directly, not through a shell, the same way on every kind
of app: buildpacks images start it through the CNB launcher, with the
environment their buildpacks prepared. For shell syntax or $VARIABLES run a
shell: run APP sh -c 'echo $DATABASE_URL' (quote it for both shells: ssh
joins its arguments with spaces, and paas splits them like a shell again).

A process type of the app's Procfile as the command runs that process's
command (run APP worker), with any further arguments added to it.

stdin, stdout, stderr and the exit code pass through SSH; with ssh -t the task
gets a terminal (--no-tty: not even then). --detach starts it in the
background, as run:detached does.`

func (p *Platform) runCommands() []*Command {
	return []*Command{
		{Name: "run", Args: "APP [-e K=V]... [--no-tty] [--detach] [--] CMD [ARGS...]",
			Help: "Run a one-off command in a new task of the current release, attached to this session", Details: runDetails,
			App: true, MinArgs: 1, Verbatim: true, Flags: withFlags(envFlags, "--no-tty", "--detach", "-d"), Run: p.run},
		{Name: "run:detached", Args: "APP [-e K=V]... [--force-tty] [--] CMD [ARGS...]",
			Help: "Run a one-off command in the background and print the task's name (see run:logs, run:stop)",
			Details: "As run, without a session to attach to: the task's output is kept for run:logs, and the task\n" +
				"stays in run:list after it exits, for a day (the newest 20 of an app). --force-tty gives it a terminal.",
			App: true, MinArgs: 1, Verbatim: true, Flags: withFlags(envFlags, "--force-tty", "--no-tty"), Run: p.runDetached},
		{Name: "run:list", Args: "APP [--format json|stdout]", Help: "List an app's one-off tasks, running and finished",
			App: true, Flags: formatFlag, Run: p.runList},
		{Name: "run:logs", Args: "APP [NAME|--container NAME] [-t] [-n NUM] [-q]",
			Help: "Show the output of an app's one-off tasks (or of task NAME); -t follows it",
			App:  true, Flags: map[string]bool{"--container": true, "-t": false, "--tail": false, "-n": true, "--num": true, "-q": false, "--quiet": false},
			Run: p.runLogs},
		{Name: "run:stop", Args: "APP [NAME|--container NAME]", Help: "Stop and remove an app's one-off task NAME, or all of them",
			App: true, Flags: map[string]bool{"--container": true}, Run: p.runStop},
	}
}

// withFlags returns base with the value-less flags names added.
func withFlags(base map[string]bool, names ...string) map[string]bool {
	out := maps.Clone(base)
	for _, n := range names {
		out[n] = false
	}
	return out
}

// terminal is what the SSH layer's stdin offers when the client asked for a
// TTY (ssh -t).
type terminal interface {
	Terminal() (*paas.Terminal, bool)
}

// runOptions returns the release a run or run:detached call runs, and the
// options the two have in common.
func (p *Platform) runOptions(c *Call) (*paas.Release, scheduler.RunOptions, error) {
	opts := scheduler.RunOptions{Args: c.Args, Stdin: c.Stdin, Stdout: c.Out, Stderr: c.Err}
	cur, err := p.currentRelease(c.App)
	if err != nil {
		return nil, opts, err
	}
	// The app's mounts of now, even those not rolled out yet.
	cur.Mounts = c.App.Mounts
	// Its networks of now too, once it has one of its own.
	if nets := c.App.Network.All(); len(nets) > 0 {
		cur.Networks = nets
	}
	for _, kv := range c.Values("-e", "--env") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, opts, fmt.Errorf("-e wants KEY=VALUE, got %q", sanitize(kv))
		}
		if err := paas.ValidateConfigKey(k); err != nil {
			return nil, opts, err
		}
		if err := paas.ValidateConfigValue(k, v); err != nil {
			return nil, opts, err
		}
		opts.Env = append(opts.Env, kv)
	}
	return cur, opts, nil
}

func (p *Platform) run(ctx context.Context, c *Call) error {
	if c.Has("--detach") || c.Has("-d") {
		return p.startDetached(ctx, c, func(name string, rel *paas.Release) {
			output.Step(c.Out, "Started %s (v%d): %s", name, rel.Version, strings.Join(c.Args, " "))
		})
	}
	cur, opts, err := p.runOptions(c)
	if err != nil {
		return err
	}
	if t, ok := c.Stdin.(terminal); ok && !c.Has("--no-tty") {
		opts.TTY, _ = t.Terminal()
	}
	code, err := p.OneOffs.Run(ctx, cur, opts)
	if err != nil {
		return err
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

func (p *Platform) runDetached(ctx context.Context, c *Call) error {
	if c.Has("--force-tty") && c.Has("--no-tty") {
		return errors.New("--force-tty and --no-tty exclude each other")
	}
	return p.startDetached(ctx, c, func(name string, _ *paas.Release) { fmt.Fprintln(c.Out, name) })
}

// startDetached starts c's command in the background and tells started the
// task's name.
func (p *Platform) startDetached(ctx context.Context, c *Call, started func(name string, rel *paas.Release)) error {
	cur, opts, err := p.runOptions(c)
	if err != nil {
		return err
	}
	opts.Stdin = nil
	if c.Has("--force-tty") {
		opts.TTY = &paas.Terminal{}
	}
	name, err := p.OneOffs.Detach(ctx, cur, opts)
	if err != nil {
		return err
	}
	started(name, cur)
	return nil
}

func (p *Platform) runList(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	if len(c.Args) > 0 {
		return errors.New("run:list takes only the app name")
	}
	tasks, err := p.OneOffs.OneOffs(ctx, c.App.Name)
	if err != nil {
		return err
	}
	if asJSON {
		if tasks == nil {
			tasks = []scheduler.OneOff{}
		}
		return output.JSON(c.Out, tasks)
	}
	output.Header(c.Out, "%s run containers", c.App.Name)
	if len(tasks) == 0 {
		output.Detail(c.Out, "(none)")
		return nil
	}
	tw := tabwriter.NewWriter(c.Out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tRELEASE\tCREATED\tCOMMAND")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\tv%d\t%s\t%s\n", t.Name, t.State, t.Release, t.CreatedAt.UTC().Format(time.DateTime), sanitize(t.Command))
	}
	return tw.Flush()
}

// taskName is the one-off task a run:logs or run:stop call names: the
// argument after the app or --container; "" for all of them.
func taskName(c *Call) (string, error) {
	name := c.Flags["--container"]
	switch {
	case len(c.Args) > 1 || len(c.Args) == 1 && name != "":
		return "", errors.New("name one task, after the app or with --container")
	case len(c.Args) == 1:
		name = c.Args[0]
	}
	if c.Has("--container") && name == "" {
		return "", errors.New("--container wants a task name")
	}
	return name, nil
}

// oneOffError words a missing task for the user.
func oneOffError(app, name string, err error) error {
	if errors.Is(err, scheduler.ErrNoOneOff) {
		return fmt.Errorf("%s has no one-off task %s: see run:list %s", app, sanitize(name), app)
	}
	return err
}

func (p *Platform) runLogs(ctx context.Context, c *Call) error {
	name, err := taskName(c)
	if err != nil {
		return err
	}
	tail, err := numFlag(c, 100)
	if err != nil {
		return err
	}
	opts := scheduler.OneOffLogOptions{Name: name, Follow: c.Has("-t") || c.Has("--tail"), Tail: tail, Raw: c.Has("-q") || c.Has("--quiet")}
	err = p.OneOffs.OneOffLogs(ctx, c.App.Name, opts, c.Out)
	if errors.Is(err, context.Canceled) {
		return nil // the user hung up on followed logs
	}
	return oneOffError(c.App.Name, name, err)
}

func (p *Platform) runStop(ctx context.Context, c *Call) error {
	name, err := taskName(c)
	if err != nil {
		return err
	}
	stopped, err := p.OneOffs.StopOneOffs(ctx, c.App.Name, name)
	for _, n := range stopped {
		output.Step(c.Out, "Stopped %s", n)
	}
	if err != nil {
		return oneOffError(c.App.Name, name, err)
	}
	if len(stopped) == 0 {
		output.Step(c.Out, "%s has no one-off tasks", c.App.Name)
	}
	return nil
}
