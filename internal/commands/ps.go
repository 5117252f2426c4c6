package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

func (p *Platform) psCommands() []*Command {
	return []*Command{
		{Name: "logs", Args: "APP [-t] [-n NUM] [-p PROCESS] [-q]", Help: "Show an app's output; -t follows it until interrupted, -q without time and task", App: true,
			Flags: map[string]bool{"-t": false, "--tail": false, "-n": true, "--num": true, "-p": true, "--ps": true, "-q": false, "--quiet": false}, Run: p.logs},
		{Name: "ps:report", Args: "APP [--format json [--watch]]", Help: "Show an app's processes; --watch prints the JSON document again at each change until interrupted", App: true,
			Flags: map[string]bool{"--format": true, "--watch": false}, Run: p.psReport},
	}
}

func (p *Platform) logs(ctx context.Context, c *Call) error {
	tail, err := numFlag(c, 100)
	if err != nil {
		return err
	}
	opts := scheduler.LogOptions{Follow: c.Has("-t") || c.Has("--tail"), Tail: tail, Quiet: c.Has("-q") || c.Has("--quiet")}
	for _, f := range []string{"-p", "--ps"} {
		if v, ok := c.Flags[f]; ok {
			proc, slot, hasSlot := strings.Cut(v, ".")
			if paas.ValidateAppName(proc) != nil || (hasSlot && !isDigits(slot)) {
				return fmt.Errorf("invalid process type %q", sanitize(v))
			}
			opts.Process = v
		}
	}
	if c.App.Current == 0 {
		return fmt.Errorf("App %s has not been deployed", c.App.Name)
	}
	err = p.Runtime.Logs(ctx, c.App.Name, opts, c.Out)
	if errors.Is(err, context.Canceled) {
		return nil // the user hung up on a followed log
	}
	return err
}

// numFlag reads the number of lines a logs command shows (-n, --num), def
// when not given.
func numFlag(c *Call, def int) (int, error) {
	for _, f := range []string{"-n", "--num"} {
		if v, ok := c.Flags[f]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("-n wants a number of lines, got %q", sanitize(v))
			}
			def = n
		}
	}
	return def, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// psWatchEvery is how often ps:report --watch reads the tasks' state.
const psWatchEvery = 2 * time.Second

func (p *Platform) psReport(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	if c.Has("--watch") {
		if !asJSON || hasReportFlag(c) {
			return refuse("ps:report --watch prints the JSON document at each change: add --format json")
		}
		return p.watchPS(ctx, c)
	}
	procs, err := p.Runtime.Status(ctx, c.App.Name)
	if err != nil {
		return err
	}
	running := 0
	for _, pr := range procs {
		running += pr.Running
	}
	fields := []kv{
		{"Deployed", strconv.FormatBool(c.App.Current > 0)},
		{"Release", fmt.Sprint(c.App.Current)},
		{"Processes", fmt.Sprint(running)},
		{"Running", strconv.FormatBool(running > 0)},
		{"Ps can scale", "true"},
		{"Ps computed procfile path", procfilePath(c.App)},
		{"Ps global procfile path", "Procfile"},
		{"Ps procfile path", c.App.ProcfilePath},
		{"Restore", strconv.FormatBool(!c.App.Stopped)},
		{"Ps storage pinned node", pinnedNode(c.App)},
	}
	resources, err := p.servingResources(c.App)
	if err != nil {
		return err
	}
	if asJSON && !hasReportFlag(c) {
		return output.JSON(c.Out, psDocument(c.App, procs, resources))
	}
	for _, proc := range slices.Sorted(maps.Keys(resources)) {
		fields = append(fields, kv{"Resources " + proc, describeResources(resources[proc])})
	}
	for _, pr := range procs {
		fields = append(fields, kv{"Status " + pr.Process, fmt.Sprintf("%d/%d running", pr.Running, pr.Desired)})
		for _, t := range pr.Tasks {
			st := t.State
			if t.Error != "" {
				st += " (" + t.Error + ")"
			}
			if t.Node != "" {
				st += " on " + t.Node
			}
			fields = append(fields, kv{fmt.Sprintf("Status %s %d", pr.Process, t.Slot), st})
		}
		for _, k := range pr.Killed {
			fields = append(fields, kv{"Killed " + k.Task, k.At.UTC().Format(time.RFC3339) + " " + k.String()})
		}
	}
	return report(c, false, c.App.Name+" ps information", fields)
}

// servingResources are the limits and reservations of each process type
// of the release app serves (none before its first).
func (p *Platform) servingResources(app *paas.App) (map[string]paas.ProcessResources, error) {
	rel, err := servingRelease(p.Store, app)
	if err != nil || rel == nil {
		return nil, err
	}
	return releaseResources(rel), nil
}

// psDocument is ps:report's JSON document.
func psDocument(app *paas.App, procs []scheduler.ProcessStatus, resources map[string]paas.ProcessResources) map[string]any {
	running := 0
	for _, pr := range procs {
		running += pr.Running
	}
	return map[string]any{
		"app": app.Name, "deployed": app.Current > 0, "release": app.Current, "processes": procs, "running": running > 0,
		"can-scale": true, "procfile-path": app.ProcfilePath, "global-procfile-path": "Procfile", "computed-procfile-path": procfilePath(app),
		"restore": !app.Stopped, "resources": resources, "storage-pinned-node": pinnedNode(app),
	}
}

// watchPS prints ps:report's JSON document, one line, and again each time
// it changes (the app read again from the store, its tasks from the
// runtime every psWatchEvery), until the caller hangs up. One command, so
// one audit record, however long it watches.
func (p *Platform) watchPS(ctx context.Context, c *Call) error {
	return watchJSON(ctx, c, psWatchEvery, func() (any, string, error) {
		app, err := p.Store.App(c.App.Name)
		if err != nil {
			return nil, "", err // destroyed meanwhile
		}
		procs, err := p.Runtime.Status(ctx, app.Name)
		if err != nil {
			return nil, "", err
		}
		resources, err := p.servingResources(app)
		if err != nil {
			return nil, "", err
		}
		doc := psDocument(app, procs, resources)
		key, err := json.Marshal(doc)
		return doc, string(key), err
	})
}

// watchJSON prints the JSON document read returns, one line, and again
// each time the key read returns with it changes, reading every `every`,
// until the caller hangs up. An error of read ends it (the app destroyed
// meanwhile).
func watchJSON(ctx context.Context, c *Call, every time.Duration, read func() (doc any, key string, err error)) error {
	printed := ""
	for first := true; ; first = false {
		doc, key, err := read()
		if ctx.Err() != nil {
			return nil // the user hung up
		}
		if err != nil {
			return err
		}
		if first || key != printed {
			if err := output.JSON(c.Out, doc); err != nil {
				return nil // the user hung up
			}
			output.Flush(c.Out)
			printed = key
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// hasReportFlag reports whether one of Dokku's single-value report flags
// was given.
func hasReportFlag(c *Call) bool {
	for f := range c.Flags {
		if f != "--format" && f != "--help" && f != "--watch" && strings.HasPrefix(f, "--") {
			return true
		}
	}
	return false
}
