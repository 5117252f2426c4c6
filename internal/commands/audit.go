package commands

import (
	"strings"

	"paas/internal/paas"
)

// Auditor keeps the audit log.
type Auditor interface {
	Record(e *paas.Event)
}

// SetAuditor makes the dispatcher record every command it runs.
func (d *Dispatcher) SetAuditor(a Auditor) { d.audit = a }

// ResultOf names an exit code in the audit log.
func ResultOf(code int) string {
	switch code {
	case ExitOK:
		return "ok"
	case ExitNotFound:
		return "not-found"
	default:
		return "error"
	}
}

const maxAuditArg = 128

// AuditArg is an argument as the audit log keeps it: printable, bounded, and
// with anything after "=" dropped, so no config value is ever recorded.
func AuditArg(a string) string {
	if k, _, ok := strings.Cut(a, "="); ok {
		a = k + "=…"
	}
	a = sanitize(a)
	if len(a) > maxAuditArg {
		a = a[:maxAuditArg] + "…"
	}
	return a
}

// record writes one audit event for a command run.
func (d *Dispatcher) record(id paas.Identity, args []string, code int) {
	if d.audit == nil {
		return
	}
	e := &paas.Event{Actor: id.Name, Source: id.Source, Result: ResultOf(code), Code: code}
	global, args, err := globalOptions(args)
	if err != nil {
		args = nil
	}
	if global.app != "" && len(args) > 0 {
		// recorded as if the app were the first argument, as the command ran
		args = append([]string{args[0], global.app}, args[1:]...)
	}
	if len(args) == 0 {
		args = []string{"help"}
	}
	e.Action = AuditArg(args[0])
	cmd, known := d.set.cmds[args[0]]
	rest, app := args[1:], ""
	if known {
		flags := map[string]string{}
		pos, err := parseFlags(cmd, rest, flags)
		_, global := flags["--global"]
		if err == nil && len(pos) > 0 && (cmd.App || cmd.NamesApp) && !(cmd.Global && global) {
			app = pos[0]
			e.App = AuditArg(app)
		}
	}
	for _, a := range rest {
		if app != "" && a == app {
			app = "" // the app is recorded once, in its own field
			continue
		}
		e.Args = append(e.Args, AuditArg(a))
	}
	if len(e.Args) > 32 {
		e.Args = append(e.Args[:32], "…")
	}
	d.audit.Record(e)
}
