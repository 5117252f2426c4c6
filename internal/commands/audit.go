package commands

import (
	"errors"
	"fmt"
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

// refusedInput is input a limit refused (too large, too many); the audit
// log records its message, so an operator sees why a command failed.
type refusedInput struct{ error }

func (r refusedInput) Unwrap() error { return r.error }

// refuse returns a refusedInput error.
func refuse(format string, args ...any) error {
	return refusedInput{fmt.Errorf(format, args...)}
}

// auditDetail is what the audit log says of a command's error: the message
// of refused input, nothing of other errors (which may quote anything).
func auditDetail(err error) string {
	var r refusedInput
	if !errors.As(err, &r) && !errors.Is(err, paas.ErrControlChar) {
		return ""
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	msg = sanitize(msg)
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return msg
}

// record writes one audit event for a command run.
func (d *Dispatcher) record(id paas.Identity, args []string, code int, err error) {
	if d.audit == nil {
		return
	}
	e := &paas.Event{Actor: id.Name, Source: id.Source, Via: id.Via, Result: ResultOf(code), Code: code, Detail: auditDetail(err)}
	global, args, gerr := globalOptions(args)
	if gerr != nil {
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
		call := &Call{Flags: map[string]string{}}
		pos, err := parseFlags(cmd, rest, call)
		_, global := call.Flags["--global"]
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
