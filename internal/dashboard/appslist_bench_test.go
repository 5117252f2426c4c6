package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"paas/internal/commands"
	"paas/internal/dashboard"
	"paas/internal/paas"
	"paas/internal/routing"
	"paas/internal/store"
	"paas/scheduler"
)

// The app list's own work, in process: the real store (500 deployed apps,
// each with config and 5 releases), the real dispatcher with its audit log
// in the store, the real routing service for the apps' URLs, and a fake
// of only Docker's service list. `go test -bench AppsPage -cpuprofile`
// shows where a page's time goes without the router and TLS around it.

type signedIn struct{}

func (signedIn) Authenticate(*http.Request) (paas.Identity, bool, error) {
	return paas.Identity{Name: "bench", Admin: true, Source: "local", Via: "web"}, true, nil
}
func (signedIn) CSRFToken(*http.Request) string { return "tok" }
func (signedIn) CheckCSRF(*http.Request) error  { return nil }
func (a storeAudit) Record(e *paas.Event)       { a.st.AddEvent(e) }
func (c *serviceList) Counts(context.Context) (map[string][]scheduler.ProcessCount, error) {
	c.calls++
	out := map[string][]scheduler.ProcessCount{}
	for i := range c.apps {
		out[fmt.Sprintf("app-%03d", i)] = []scheduler.ProcessCount{{Process: "web", Running: 2, Desired: 2}, {Process: "worker", Running: 1, Desired: 1}}
	}
	return out, nil
}

type storeAudit struct{ st *store.Store }

type serviceList struct {
	apps  int
	calls int
}

func newBenchPage(b *testing.B, apps int) (http.Handler, *commands.Dispatcher) {
	dir := b.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	cfg := map[string]string{}
	for i := range 12 {
		cfg[fmt.Sprintf("SETTING_%02d", i)] = strings.Repeat("v", 40)
	}
	for i := range apps {
		name := fmt.Sprintf("app-%03d", i)
		if err := st.CreateApp(&paas.App{Name: name, Owner: "bench", CreatedAt: time.Now().UTC()}); err != nil {
			b.Fatal(err)
		}
		for v := 1; v <= 5; v++ {
			rel := &paas.Release{App: name, Version: v, Config: cfg, Author: "bench", Reason: "push", CreatedAt: time.Now().UTC(),
				Image:     paas.Image{Repository: "127.0.0.1:5001/bench/" + name, Digest: "sha256:" + strings.Repeat("0", 64)},
				Processes: []paas.ProcessType{{Name: "web", Command: "./server"}, {Name: "worker", Command: "./worker"}}}
			if err := st.AddRelease(rel); err != nil {
				b.Fatal(err)
			}
		}
	}
	routes := routing.New(nil, st, routing.Options{Installation: "bench", Domain: "paas.bench", HTTPPort: 80, HTTPSPort: 443, DataDir: dir})
	p := &commands.Platform{Store: st, Routing: routes, RoutingStore: st, Counts: &serviceList{apps: apps},
		AppURL: func(app string) string { return "http://" + app + ".paas.bench" }}
	d := commands.NewDispatcher(st, "bench", p.Builtins())
	d.SetAuditor(storeAudit{st})
	return dashboard.New(dashboard.Options{Commands: d, Sessions: signedIn{}}), d
}

// BenchmarkAppsPage is GET / (the first 100 of 500 apps).
func BenchmarkAppsPage(b *testing.B) {
	h, _ := newBenchPage(b, 500)
	var size int
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}

// BenchmarkAppsList is `apps:list --format json` (GET /api/v1/apps's command).
func BenchmarkAppsList(b *testing.B) {
	_, d := newBenchPage(b, 500)
	id := paas.Identity{Name: "bench", Admin: true, Source: "token", Via: "api"}
	for b.Loop() {
		if code := d.RunCommand(context.Background(), id, []string{"apps:list", "--format", "json"}, strings.NewReader(""), io.Discard, io.Discard); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
