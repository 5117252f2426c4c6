package commands

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// EventStore reads the audit log.
type EventStore interface {
	AppStore
	// Events returns events with an ID above after that keep accepts, oldest
	// first, at most limit of the newest (0: all).
	Events(after, limit int, keep func(*paas.Event) bool) ([]*paas.Event, error)
}

// EventPoll is how often `events -t` looks for new events.
var EventPoll = 500 * time.Millisecond

// EventCommands is events: the audit log, scoped to what the caller may see.
func EventCommands(st EventStore) []*Command {
	return []*Command{{
		Name: "events", Args: "[-t] [-n N] [--format json] [APP]",
		Help:     "Show who did what to which app, when, with what result (-t follows; administrators see every event, others those of the apps they may use)",
		NamesApp: true,
		Flags:    map[string]bool{"-t": false, "--tail": false, "-n": true, "--num": true, "--format": true},
		Run: func(ctx context.Context, c *Call) error {
			return showEvents(ctx, st, c)
		},
	}}
}

func showEvents(ctx context.Context, st EventStore, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	limit := 100
	for _, f := range []string{"-n", "--num"} {
		if v, ok := c.Flags[f]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%s %q: want a number of events", f, sanitize(v))
			}
			limit = n
		}
	}
	var only string
	if len(c.Args) > 0 {
		if err := paas.ValidateAppName(c.Args[0]); err != nil {
			return err
		}
		// An app one may not use is reported like a missing one.
		app, err := st.App(c.Args[0])
		if err != nil || !auth.CanUseApp(c.ID, app) {
			return notFound(c.Args[0])
		}
		only = app.Name
	}
	follow := c.Has("-t") || c.Has("--tail")
	visible := visibility(st, c.ID)
	keep := func(e *paas.Event) bool {
		return (only == "" || e.App == only) && visible(e)
	}
	evs, err := st.Events(0, limit, keep)
	if err != nil {
		return err
	}
	if asJSON && !follow {
		if evs == nil {
			evs = []*paas.Event{}
		}
		return output.JSON(c.Out, evs)
	}
	last := 0
	for {
		for _, e := range evs {
			if asJSON {
				if err := output.JSON(c.Out, e); err != nil {
					return err
				}
			} else {
				writeEvent(c.Out, e)
			}
			last = e.ID
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(EventPoll):
		}
		if last == 0 {
			// Nothing shown yet: start after the newest event, visible or not.
			if all, err := st.Events(0, 1, nil); err == nil && len(all) > 0 {
				last = all[0].ID
			}
		}
		if evs, err = st.Events(last, 0, keep); err != nil {
			return err
		}
	}
}

// visibility says which events id may see: every one for an administrator;
// otherwise those of apps id may use now, and id's own without an app.
func visibility(st AppStore, id paas.Identity) func(*paas.Event) bool {
	if id.Admin {
		return func(*paas.Event) bool { return true }
	}
	canUse := map[string]bool{}
	return func(e *paas.Event) bool {
		if e.App == "" {
			return e.Actor == id.Name
		}
		ok, seen := canUse[e.App]
		if !seen {
			app, err := st.App(e.App)
			ok = err == nil && auth.CanUseApp(id, app)
			canUse[e.App] = ok
		}
		return ok
	}
}

// writeEvent prints one event as a line: time, actor, action, app, result, args.
func writeEvent(w io.Writer, e *paas.Event) {
	app := e.App
	if app == "" {
		app = "-"
	}
	actor := e.Actor
	if e.Via != "" {
		actor += "/" + strings.ReplaceAll(e.Via, " ", ":") // alice/token:ci-bot, alice/web
	}
	line := fmt.Sprintf("%s %s %s %s %s", e.Time.UTC().Format(time.RFC3339), sanitize(actor), sanitize(e.Action), sanitize(app), e.Result)
	if len(e.Args) > 0 {
		args := make([]string, len(e.Args))
		for i, a := range e.Args {
			args[i] = sanitize(a)
		}
		line += " " + strings.Join(args, " ")
	}
	if e.Detail != "" {
		line += " (" + sanitize(e.Detail) + ")"
	}
	fmt.Fprintln(w, line)
}
