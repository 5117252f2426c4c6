package commands

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

// storePipeline applies config changes to the real store, with no rollout.
type storePipeline struct{ st *store.Store }

func (p storePipeline) SetConfig(_ context.Context, app string, _ paas.Identity, _ string, _ bool, fn func(map[string]string) error, _ io.Writer, also ...func(*paas.App)) error {
	_, err := p.st.UpdateApp(app, func(a *paas.App) error {
		cfg := maps.Clone(a.Config)
		if err := fn(cfg); err != nil {
			return err
		}
		a.Config = cfg
		for _, f := range also {
			f(a)
		}
		return nil
	})
	return err
}

func (storePipeline) Locked(_ context.Context, _ string, _ io.Writer, fn func() error) error {
	return fn()
}

// auditRecorder writes events to the store, like the daemon's audit log.
type auditRecorder struct{ st *store.Store }

func (a auditRecorder) Record(e *paas.Event) { a.st.AddEvent(e) }

var (
	carol = paas.Identity{Name: "carol", Groups: []string{"Domain Users", "team"}, Source: "ldap"}
	dave  = paas.Identity{Name: "dave", Source: "ldap"}
)

// storeEnv is a dispatcher over the real store with every command, and the
// audit log on.
type storeEnv struct {
	st *store.Store
	d  *Dispatcher
}

func newStoreEnv(t *testing.T) *storeEnv {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, a := range []*paas.App{
		{Name: "alpha", Owner: "alice", Config: map[string]string{"TOKEN": "s3cret-value"}},
		{Name: "bravo", Owner: "bob"},
	} {
		if err := st.CreateApp(a); err != nil {
			t.Fatal(err)
		}
	}
	p := &Platform{Store: st, Pipeline: storePipeline{st}, Runtime: &fakeRuntime{}, Repos: &fakeRepos{}, Images: &fakeImages{},
		AppURL: func(app string) string { return "http://" + app + ".example.test" }}
	d := NewDispatcher(st, "1.2.3", p.Builtins(), AccessCommands(st), WhoamiCommands(), EventCommands(st))
	d.SetAuditor(auditRecorder{st})
	return &storeEnv{st: st, d: d}
}

func (e *storeEnv) run(id paas.Identity, args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := e.d.RunCommand(context.Background(), id, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// A user outside an app's access list gets, on every command, exactly what a
// missing app gives; acl:add of a user or @group lets them in; only the owner
// and administrators manage the list.
func TestAccessLists(t *testing.T) {
	e := newStoreEnv(t)
	appCommands := [][]string{
		{"apps:exists", "APP"}, {"apps:report", "APP"}, {"apps:destroy", "APP", "--force"},
		{"config:show", "APP"}, {"config:get", "APP", "TOKEN"}, {"config:keys", "APP"},
		{"config:set", "APP", "X=1"}, {"config:unset", "APP", "TOKEN"}, {"config:export", "APP"},
		{"logs", "APP"}, {"ps:report", "APP"},
		{"acl:add", "APP", "dave"}, {"acl:remove", "APP", "dave"}, {"acl:list", "APP"},
		{"events", "APP"},
		{"releases", "APP"}, {"releases:info", "APP", "1"}, {"rollback", "APP"},
		{"ps:scale", "APP", "web=2"}, {"ps:restart", "APP"}, {"ps:stop", "APP"}, {"ps:start", "APP"}, {"ps:rebuild", "APP"},
		{"run", "APP", "--", "id"}, {"checks:report", "APP"}, {"checks:disable", "APP"}, {"checks:set", "APP", "attempts", "3"},
	}
	refusedLikeMissing := func(t *testing.T, id paas.Identity) {
		t.Helper()
		for _, cmd := range appCommands {
			with := func(app string) []string {
				args := slices.Clone(cmd)
				for i := range args {
					args[i] = strings.ReplaceAll(args[i], "APP", app)
				}
				return args
			}
			code, out, errOut := e.run(id, with("alpha")...)
			mcode, mout, merr := e.run(id, with("nosuchapp")...)
			if code != ExitNotFound || out != mout || errOut != strings.ReplaceAll(merr, "nosuchapp", "alpha") || code != mcode {
				t.Errorf("%s %v: %d %q %q; a missing app gives %d %q %q", id.Name, cmd, code, out, errOut, mcode, mout, merr)
			}
			if strings.Contains(out+errOut, "s3cret") {
				t.Errorf("%v leaked the config", cmd)
			}
		}
		if _, out, _ := e.run(id, "apps:list"); strings.Contains(out, "alpha") {
			t.Errorf("%s sees alpha in apps:list", id.Name)
		}
	}
	mustRun := func(t *testing.T, id paas.Identity, want int, args ...string) string {
		t.Helper()
		code, out, errOut := e.run(id, args...)
		if code != want {
			t.Fatalf("%s %v: exit %d, want %d\n%s%s", id.Name, args, code, want, out, errOut)
		}
		return out + errOut
	}

	refusedLikeMissing(t, bob)
	refusedLikeMissing(t, carol)
	refusedLikeMissing(t, dave)

	// alice shares with bob: he may use alpha, not manage its list.
	mustRun(t, alice, ExitOK, "acl:add", "alpha", "bob")
	mustRun(t, bob, ExitOK, "config:get", "alpha", "TOKEN")
	if out := mustRun(t, bob, ExitError, "acl:add", "alpha", "dave"); !strings.Contains(out, "only the owner of alpha") {
		t.Fatalf("bob acl:add: %s", out)
	}
	mustRun(t, bob, ExitError, "acl:list", "alpha")
	refusedLikeMissing(t, carol)

	// a group with a space in its name, as Active Directory has them
	mustRun(t, alice, ExitOK, "acl:add", "alpha", "@Domain Users")
	mustRun(t, carol, ExitOK, "apps:report", "alpha")
	refusedLikeMissing(t, dave)
	if out := mustRun(t, alice, ExitOK, "acl:list", "alpha", "--format", "json"); !strings.Contains(out, `"access":["@Domain Users","bob"]`) {
		t.Fatalf("acl:list: %s", out)
	}

	// bad entries are refused and change nothing
	for _, bad := range []string{"@", "", " x", "x ", "@@x", "x\x1b[31m", "x\u009b31m", "x\xff", "x\u202e", strings.Repeat("a", 257)} {
		code, _, errOut := e.run(alice, "acl:add", "alpha", bad)
		if code != ExitError || strings.ContainsAny(errOut, "\x1b\u009b\u202e") {
			t.Errorf("acl:add %q: exit %d, %q", bad, code, errOut)
		}
	}
	mustRun(t, alice, ExitError, "acl:add", "alpha", "bob")
	mustRun(t, alice, ExitError, "acl:remove", "alpha", "nobody")
	// an administrator manages any app's list
	mustRun(t, root, ExitOK, "acl:remove", "alpha", "@Domain Users")
	mustRun(t, alice, ExitOK, "acl:remove", "alpha", "bob")
	refusedLikeMissing(t, bob)
	refusedLikeMissing(t, carol)
	a, err := e.st.App("alpha")
	if err != nil || len(a.Access) != 0 {
		t.Fatalf("access list left: %+v %v", a, err)
	}
}

func TestAuditLogAndEvents(t *testing.T) {
	e := newStoreEnv(t)
	e.run(alice, "config:set", "alpha", "PASSWORD=hunter2", "--no-restart")
	e.run(alice, "config:set", "--encoded", "alpha", "B64=aHVudGVyMg==")
	e.run(bob, "config:show", "alpha")
	e.run(bob, "apps:create", "bobapp")
	e.run(alice, "acl:add", "alpha", "@team")
	e.run(dave, "\x1b[2Jevil\u009b31m")

	evs, err := e.st.Events(0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(evs)
	for _, secret := range []string{"hunter2", "aHVudGVyMg", "s3cret"} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the audit log holds a config value %q: %s", secret, raw)
		}
	}
	want := []struct{ actor, action, app, result string }{
		{"alice", "config:set", "alpha", "ok"},
		{"alice", "config:set", "alpha", "ok"},
		{"bob", "config:show", "alpha", "not-found"},
		{"bob", "apps:create", "bobapp", "ok"},
		{"alice", "acl:add", "alpha", "ok"},
		{"dave", `\x1b[2Jevil\u009b31m`, "", "error"},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %s", len(evs), len(want), raw)
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Actor != w.actor || ev.Action != w.action || ev.App != w.app || ev.Result != w.result || ev.Time.IsZero() {
			t.Errorf("event %d = %+v, want %+v", i, ev, w)
		}
	}
	if !slices.Equal(evs[0].Args, []string{"PASSWORD=…", "--no-restart"}) {
		t.Errorf("config:set args recorded as %q", evs[0].Args)
	}

	// administrators see all; others the events of apps they may use and
	// their own without an app; a terminal never gets a raw escape.
	_, rootOut, _ := e.run(root, "events")
	_, aliceOut, _ := e.run(alice, "events")
	_, bobOut, _ := e.run(bob, "events")
	_, daveOut, _ := e.run(dave, "events")
	for _, c := range []struct {
		who, out string
		has, not []string
	}{
		{"root", rootOut, []string{"bob config:show alpha not-found", "bob apps:create bobapp ok", "dave \\x1b[2Jevil\\u009b31m - error"}, nil},
		{"alice", aliceOut, []string{"alice config:set alpha ok PASSWORD=…", "bob config:show alpha not-found"}, []string{"bobapp", "evil"}},
		{"bob", bobOut, []string{"bob apps:create bobapp ok"}, []string{"alpha"}},
		{"dave", daveOut, []string{"evil"}, []string{"alpha", "bobapp"}},
	} {
		for _, s := range c.has {
			if !strings.Contains(c.out, s) {
				t.Errorf("%s's events lack %q:\n%s", c.who, s, c.out)
			}
		}
		for _, s := range c.not {
			if strings.Contains(c.out, s) {
				t.Errorf("%s's events show %q:\n%s", c.who, s, c.out)
			}
		}
		if strings.ContainsAny(c.out, "\x1b\u009b") {
			t.Errorf("%s's events replay a raw escape: %q", c.who, c.out)
		}
	}
	if code, _, errOut := e.run(bob, "events", "alpha"); code != ExitNotFound || !strings.Contains(errOut, "App alpha does not exist") {
		t.Errorf("bob events alpha: %d %s", code, errOut)
	}
	code, out, _ := e.run(alice, "events", "alpha", "--format", "json", "-n", "2")
	var got []paas.Event
	if err := json.Unmarshal([]byte(out), &got); code != ExitOK || err != nil || len(got) != 2 || got[0].Action != "acl:add" || got[1].Actor != "bob" || got[1].Action != "events" {
		t.Errorf("events --format json -n 2: %d %v %s", code, err, out)
	}
	if code, _, _ := e.run(alice, "events", "-n", "x"); code != ExitError {
		t.Errorf("events -n x: exit %d", code)
	}
}

// events -t prints new events as they come, until the session ends.
func TestEventsFollow(t *testing.T) {
	e := newStoreEnv(t)
	old := EventPoll
	EventPoll = 20 * time.Millisecond
	defer func() { EventPoll = old }()
	e.run(alice, "apps:report", "alpha")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var out strings.Builder
	done := make(chan int)
	go func() {
		done <- fail(io.Discard, e.d.runCommand(ctx, alice, []string{"events", "-t", "alpha"}, strings.NewReader(""), lockedWriter{&mu, &out}, io.Discard))
	}()
	time.Sleep(100 * time.Millisecond)
	e.run(bob, "config:show", "alpha")   // not visible to alice? it is: alpha is hers
	e.run(bob, "apps:create", "other")   // another app: not shown
	e.run(alice, "config:keys", "alpha") // shown
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		s := out.String()
		mu.Unlock()
		if strings.Contains(s, "alice config:keys alpha ok") {
			if !strings.Contains(s, "alice apps:report alpha ok") || !strings.Contains(s, "bob config:show alpha not-found") || strings.Contains(s, "other") {
				t.Fatalf("followed events:\n%s", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events -t never showed the new event:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("events -t exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events -t did not stop with the session")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWhoami(t *testing.T) {
	e := newStoreEnv(t)
	code, out, _ := e.run(carol, "whoami")
	if code != ExitOK || !strings.Contains(out, "Name:") || !strings.Contains(out, "carol") || !strings.Contains(out, "Domain Users, team") || !strings.Contains(out, "ldap") {
		t.Fatalf("whoami: %d %s", code, out)
	}
	code, out, _ = e.run(root, "whoami", "--format", "json")
	if code != ExitOK || strings.TrimSpace(out) != `{"name":"root","admin":true,"source":"","groups":[]}` {
		t.Fatalf("whoami json: %d %s", code, out)
	}
}
