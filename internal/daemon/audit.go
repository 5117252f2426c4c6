package daemon

import (
	"errors"
	"log/slog"

	"paas/gitreceive"
	"paas/internal/commands"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/scheduler"
)

// auditLog keeps audit events in the store. A failure to record is logged,
// never shown to the user or allowed to change a command's outcome.
type auditLog struct {
	store *store.Store
	log   *slog.Logger
}

var _ commands.Auditor = (*auditLog)(nil)

func (a *auditLog) Record(e *paas.Event) {
	if a == nil {
		return
	}
	if err := a.store.AddEvent(e); err != nil {
		a.log.Error("record audit event", "action", e.Action, "app", e.App, "err", err)
	}
}

// recordPush records a push (or a fetch refused) of app by id.
func (a *auditLog) recordPush(id paas.Identity, action, app string, err error, detail string) {
	if a == nil {
		return
	}
	code := commands.ExitOK
	switch {
	case errors.Is(err, paas.ErrAppNotFound):
		code = commands.ExitNotFound
	case err != nil:
		code = commands.ExitError
		if detail == "" {
			detail = err.Error()
		}
	}
	a.Record(&paas.Event{Actor: id.Name, Source: id.Source, App: app, Action: action, Result: commands.ResultOf(code), Code: code, Detail: commands.AuditArg(detail)})
}

// recordRecovered records how a restart settled d, a deploy the stopped
// paasd left open: for a push, the push's own outcome, which its pusher
// never learnt for sure.
func (a *auditLog) recordRecovered(d *paas.Deploy) {
	if a == nil {
		return
	}
	code, detail := commands.ExitOK, "settled at restart"
	if d.Commit != "" {
		detail = "commit " + d.Commit + ", " + detail
	}
	if d.State != paas.DeploySucceeded {
		code, detail = commands.ExitError, detail+": "+d.Error
	}
	action := d.Reason
	if action == "push" {
		action = "deploy"
	}
	a.Record(&paas.Event{Actor: d.Author, Source: "restart", App: d.App, Action: action, Result: commands.ResultOf(code), Code: code, Detail: commands.AuditArg(detail)})
}

var _ gitreceive.Refusals = (*auditLog)(nil)

// Refused records input the SSH server refused before a command or a push
// handler saw it (a push over --max-push-size, an unreadable command line).
func (a *auditLog) Refused(id paas.Identity, action, app, detail string) {
	if a == nil {
		return
	}
	a.Record(&paas.Event{Actor: id.Name, Source: id.Source, App: app, Action: action,
		Result: commands.ResultOf(commands.ExitError), Code: commands.ExitError, Detail: detail})
}

// recordKill records a task the kernel killed for memory (an "oom" event).
func (a *auditLog) recordKill(k scheduler.Kill) {
	if a == nil {
		return
	}
	a.log.Warn("task killed for memory", "app", k.App, "task", k.Task, "limit_bytes", k.Limit)
	a.Record(&paas.Event{Time: k.At, Actor: "paas", Source: "docker", App: k.App, Action: "oom",
		Result: commands.ResultOf(commands.ExitError), Code: 137, Detail: k.String()})
}
