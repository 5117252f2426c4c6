package commands

import (
	"encoding/base64"
	"strings"
	"sync"
	"testing"

	"paas/internal/paas"
)

type eventList struct {
	mu     sync.Mutex
	events []*paas.Event
}

func (l *eventList) Record(e *paas.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventList) last() *paas.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 {
		return &paas.Event{}
	}
	return l.events[len(l.events)-1]
}

// TestLimits: input over a limit, or with a control character where none
// may be, is refused with a message naming what and why, changes nothing,
// and the audit log says why.
func TestLimits(t *testing.T) {
	big := strings.Repeat("v", 1025)
	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantDetail string // in the audit event; "" for none
	}{
		{name: "config value over the limit", args: []string{"config:set", "alpha", "BIG=" + big},
			wantErr:    "the value of BIG is 1.001KiB, more than the 1KiB a config value may hold here (paasd serve --max-config-value); nothing was changed",
			wantDetail: "the value of BIG is 1.001KiB, more than"},
		{name: "encoded config value over the limit", args: []string{"config:set", "--encoded", "alpha", "BIG=" + base64.StdEncoding.EncodeToString([]byte(big))},
			wantErr: "the value of BIG is 1.001KiB, more than the 1KiB", wantDetail: "the value of BIG"},
		{name: "whole config over the limit", args: []string{"config:set", "alpha", "A=" + big[:1000], "B=" + big[:1000], "C=" + big[:1000]},
			wantErr:    "the config of alpha would be 2.952KiB, more than the 2KiB an app's config may hold here (paasd serve --max-config-size); nothing was changed",
			wantDetail: "the config of alpha would be"},
		{name: "scale over the limit", args: []string{"ps:scale", "bravo", "web=2", "worker=101"},
			wantErr:    "worker=101: a process type may run at most 100 tasks here (paasd serve --max-scale); nothing was changed",
			wantDetail: "worker=101: a process type may run at most 100 tasks"},
		{name: "newline in an app name", args: []string{"config:show", "alpha\nbravo"},
			wantErr: `argument "alpha\nbravo" holds a control character (\n): names and arguments cannot hold one`, wantDetail: "control character"},
		{name: "tab in a process type", args: []string{"ps:scale", "bravo", "web\t=2"}, wantErr: `holds a control character (\t)`, wantDetail: "control character"},
		{name: "escape in a config key", args: []string{"config:set", "alpha", "K\x1b=v"}, wantErr: `argument "K\x1b" holds a control character (\x1b)`},
		{name: "C1 character in an app name", args: []string{"apps:create", "x\u009by"}, wantErr: `holds a control character (\u009b)`},
		{name: "DEL in a flag value", args: []string{"apps:list", "--format", "json\x7f"}, wantErr: `holds a control character (\x7f)`},
		{name: "control character in a key name", args: []string{"config:unset", "alpha", "GREETING\r"}, wantErr: `holds a control character (\r)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(p *Platform) {
				p.Limits = Limits{MaxConfigValue: 1024, MaxConfigSize: 2048, MaxScale: 100}
			})
			events := &eventList{}
			e.d.SetAuditor(events)
			code, out, errOut := e.run(t, alice, "", tc.args...)
			if tc.args[0] == "ps:scale" {
				code, out, errOut = e.run(t, bob, "", tc.args...)
			}
			if code != ExitError || !strings.HasPrefix(errOut, " !     ") || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.wantErr)
			}
			if out != "" {
				t.Fatalf("stdout %q, want nothing", out)
			}
			if cfg := e.store.apps["alpha"].Config; len(cfg) != 2 || cfg["GREETING"] != "hi" {
				t.Fatalf("alpha's config changed: %q", cfg)
			}
			if len(e.pipeline.calls) != 0 || len(e.releases.calls) != 0 {
				t.Fatalf("changes were made: %v %v", e.pipeline.calls, e.releases.calls)
			}
			ev := events.last()
			if ev.Result != "error" || !strings.Contains(ev.Detail, tc.wantDetail) {
				t.Fatalf("audit event %+v, want detail %q", ev, tc.wantDetail)
			}
			if strings.Contains(ev.Detail, big[:100]) {
				t.Fatalf("a config value reached the audit log: %q", ev.Detail)
			}
		})
	}
}

func TestLimitsAllow(t *testing.T) {
	e := newEnv(t, func(p *Platform) {
		p.Limits = Limits{MaxConfigValue: 1024, MaxConfigSize: 2048, MaxScale: 100}
	})
	// At the limits, and a multi-line value with control characters.
	value := strings.Repeat("v", 1024)
	if code, _, errOut := e.run(t, alice, "", "config:set", "alpha", "MAX="+value, "CERT=-----BEGIN X-----\nAAAA\r\n\t-----END X-----\n"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := e.store.apps["alpha"].Config; got["MAX"] != value || !strings.Contains(got["CERT"], "\nAAAA\r\n\t") {
		t.Fatalf("config %q", got)
	}
	if code, _, errOut := e.run(t, bob, "", "ps:scale", "bravo", "web=100"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Removing keys is never refused by the size limit, even over it.
	e.store.apps["alpha"].Config["HUGE"] = strings.Repeat("h", 4096)
	if code, _, errOut := e.run(t, alice, "", "config:unset", "alpha", "HUGE"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Without limits, nothing is refused for its size.
	e = newEnv(t)
	if code, _, errOut := e.run(t, alice, "", "config:set", "alpha", "BIG="+strings.Repeat("v", 100<<10)); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestStdinLimits: what a command reads from stdin is bounded, and input
// over the bound is refused as such, not cut and misread.
func TestStdinLimits(t *testing.T) {
	e := newEnv(t)
	events := &eventList{}
	e.d.SetAuditor(events)
	code, _, errOut := e.run(t, root, strings.Repeat("k", 17<<10), "ssh-keys:add", "bob")
	if code != ExitError || !strings.Contains(errOut, " !     more than 16 KB on stdin: give one public key") {
		t.Fatalf("ssh-keys:add: exit %d, stderr %q", code, errOut)
	}
	if ev := events.last(); !strings.Contains(ev.Detail, "more than 16 KB on stdin") {
		t.Fatalf("audit event %+v", ev)
	}
	if keys, _ := e.store.Keys(); len(keys) != 0 {
		t.Fatalf("keys %v", keys)
	}
}
