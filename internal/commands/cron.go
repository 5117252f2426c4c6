package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"paas/internal/cron"
	"paas/internal/output"
)

// CronJobs runs and reports the cron tasks of app.json.
type CronJobs interface {
	List(app string) ([]cron.Status, error)
	Start(ctx context.Context, app, id string) (string, <-chan cron.Run, error)
	Runs(app, id string) ([]cron.Run, error)
	SetMaintenance(app, id string, on bool) error
}

const cronDetails = `Cron tasks come from the "cron" list of app.json (Dokku's format):
  {"cron": [{"command": "worker --once", "schedule": "0 3 * * *"}]}
command is a command line or a Procfile process type; schedule is cron syntax
(minute hour day-of-month month day-of-week, in UTC) or @yearly, @monthly,
@weekly, @daily, @hourly, @every 10m. Each run is a one-off task of the current
release (as run:detached: the app's config, network and limits); a run still
going when the next one is due is skipped, and the skip is in events. Failed
runs are in events too; cron:logs shows the output of the last 5 runs.
An image deploy (git:from-image) reads app.json from the image's working
directory.`

// CronCommands are cron:list, cron:run, cron:set, cron:suspend,
// cron:resume and cron:logs.
func CronCommands(j CronJobs) []*Command {
	c := &cronCommands{jobs: j}
	return []*Command{
		{Name: "cron:list", Args: "APP [--format json|stdout]", Help: "List an app's cron tasks: ID, schedule, command, next run, last result",
			Details: cronDetails, App: true, Flags: formatFlag, Run: c.list},
		{Name: "cron:run", Args: "APP CRON_ID [--detach]", Help: "Run a cron task now, attached (its output and exit code) or with --detach in the background",
			App: true, MinArgs: 1, Flags: map[string]bool{"--detach": false}, Run: c.run},
		{Name: "cron:set", Args: "APP CRON_ID maintenance true|false", Help: "Suspend (maintenance true) or resume a cron task's scheduled runs",
			App: true, MinArgs: 3, Run: c.set},
		{Name: "cron:suspend", Args: "APP CRON_ID", Help: "Suspend a cron task: it is not run on schedule (cron:run still runs it)",
			App: true, MinArgs: 1, Run: c.toggle(true)},
		{Name: "cron:resume", Args: "APP CRON_ID", Help: "Resume a suspended cron task",
			App: true, MinArgs: 1, Run: c.toggle(false)},
		{Name: "cron:logs", Args: "APP CRON_ID [--format json]", Help: "Show the output of a cron task's last runs (5 kept, 64 KiB each)",
			App: true, MinArgs: 1, Flags: formatFlag, Run: c.logs},
	}
}

type cronCommands struct{ jobs CronJobs }

// cronError words the cron service's errors for the user.
func cronError(err error) error {
	if errors.Is(err, cron.ErrNoTask) || errors.Is(err, cron.ErrRunning) {
		return errors.New(sanitize(err.Error()))
	}
	return err
}

// oneArg checks that c has n arguments after the app (fewer are refused
// by the dispatcher already, as missing).
func oneArg(c *Call, n int) error {
	if len(c.Args) != n {
		return fmt.Errorf("too many arguments: %d after the app, want %d", len(c.Args), n)
	}
	return nil
}

func (c *cronCommands) list(_ context.Context, call *Call) error {
	asJSON, err := wantJSON(call)
	if err != nil {
		return err
	}
	if len(call.Args) > 0 {
		return errors.New("cron:list takes only the app name")
	}
	tasks, err := c.jobs.List(call.App.Name)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(call.Out, tasks)
	}
	output.Header(call.Out, "%s cron tasks", call.App.Name)
	if len(tasks) == 0 {
		output.Detail(call.Out, "(none: app.json of the current release has no \"cron\")")
		return nil
	}
	tw := tabwriter.NewWriter(call.Out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSCHEDULE\tCOMMAND\tNEXT RUN\tLAST RESULT")
	for _, t := range tasks {
		next := "-"
		switch {
		case t.Maintenance:
			next = "suspended"
		case t.Next != nil:
			next = t.Next.UTC().Format(time.DateTime)
		}
		last := "-"
		if t.LastRun != nil {
			last = t.LastResult + " at " + t.LastRun.UTC().Format(time.DateTime)
		}
		if t.Running {
			last = "running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, sanitize(t.Schedule), sanitize(t.Command), next, last)
	}
	return tw.Flush()
}

func (c *cronCommands) run(ctx context.Context, call *Call) error {
	if err := oneArg(call, 1); err != nil {
		return err
	}
	name, done, err := c.jobs.Start(ctx, call.App.Name, call.Args[0])
	if err != nil {
		return cronError(err)
	}
	if call.Has("--detach") {
		output.Step(call.Out, "Started cron task %s as %s (cron:logs %s %s)", call.Args[0], name, call.App.Name, call.Args[0])
		return nil
	}
	select {
	case r := <-done:
		fmt.Fprint(call.Out, r.Output)
		if r.Error != "" {
			return errors.New(sanitize(r.Error))
		}
		if r.ExitCode != 0 {
			return &exitError{code: r.ExitCode}
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *cronCommands) set(_ context.Context, call *Call) error {
	if err := oneArg(call, 3); err != nil {
		return err
	}
	id, prop, val := call.Args[0], call.Args[1], call.Args[2]
	if prop != "maintenance" {
		return fmt.Errorf("unknown cron property %q (maintenance)", sanitize(prop))
	}
	on, err := strconv.ParseBool(val)
	if err != nil || (val != "true" && val != "false") {
		return fmt.Errorf("maintenance wants true or false, got %q", sanitize(val))
	}
	return c.setMaintenance(call, id, on)
}

func (c *cronCommands) toggle(on bool) func(context.Context, *Call) error {
	return func(_ context.Context, call *Call) error {
		if err := oneArg(call, 1); err != nil {
			return err
		}
		return c.setMaintenance(call, call.Args[0], on)
	}
}

func (c *cronCommands) setMaintenance(call *Call, id string, on bool) error {
	if err := c.jobs.SetMaintenance(call.App.Name, id, on); err != nil {
		return cronError(err)
	}
	if on {
		output.Step(call.Out, "Suspended cron task %s of %s", id, call.App.Name)
	} else {
		output.Step(call.Out, "Resumed cron task %s of %s", id, call.App.Name)
	}
	return nil
}

func (c *cronCommands) logs(_ context.Context, call *Call) error {
	asJSON, err := wantJSON(call)
	if err != nil {
		return err
	}
	if err := oneArg(call, 1); err != nil {
		return err
	}
	runs, err := c.jobs.Runs(call.App.Name, call.Args[0])
	if err != nil {
		return cronError(err)
	}
	if asJSON {
		if runs == nil {
			runs = []cron.Run{}
		}
		return output.JSON(call.Out, runs)
	}
	if len(runs) == 0 {
		output.Step(call.Out, "Cron task %s of %s has not run yet", call.Args[0], call.App.Name)
		return nil
	}
	for _, r := range runs {
		output.Header(call.Out, "%s run of %s (v%d, %s), %s", r.Started.UTC().Format(time.DateTime), r.Task, r.Release, r.Trigger, r.Result())
		if r.Error != "" {
			output.Detail(call.Out, "%s", sanitize(r.Error))
		}
		fmt.Fprint(call.Out, r.Output)
	}
	return nil
}
