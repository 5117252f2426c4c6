package cron

import (
	"fmt"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

// BenchmarkTick: one tick of the cron service over a real store of 500
// deployed apps, 10 of them with a task (none due), against the reads a
// tick made before it kept what it decoded (every app and every serving
// release, decoded at each tick, timed first): it reports old-ns/op and
// the ratio x-old.
func BenchmarkTick(b *testing.B) {
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	cfg := map[string]string{}
	for i := range 12 {
		cfg[fmt.Sprintf("SETTING_%02d", i)] = fmt.Sprintf("%040d", i)
	}
	now := time.Now().UTC()
	for i := range 500 {
		name := fmt.Sprintf("app-%03d", i)
		if err := st.CreateApp(&paas.App{Name: name, Owner: "bench", CreatedAt: now}); err != nil {
			b.Fatal(err)
		}
		rel := &paas.Release{App: name, Version: 1, Config: cfg, ConfigVersion: 1, Author: "bench", Reason: "push",
			Processes: []paas.ProcessType{{Name: "web", Command: "./server"}, {Name: "worker", Command: "./worker"}},
			Scale:     map[string]int{"web": 2, "worker": 1}, CreatedAt: now}
		if i%50 == 0 {
			rel.Cron = []paas.CronTask{{ID: TaskID("report", "@yearly"), Command: "report", Schedule: "@yearly"}}
		}
		if err := st.AddRelease(rel); err != nil {
			b.Fatal(err)
		}
	}
	// The peer, in the same run: what a tick read before, 20 times.
	const peerRuns = 20
	peerStart := time.Now()
	for range peerRuns {
		apps, err := st.Apps()
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range apps {
			if _, err := st.Release(a.Name, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	peer := float64(time.Since(peerStart).Nanoseconds()) / peerRuns
	s := New(st, &fakeRunner{}, &fakeEvents{}, Options{Dir: b.TempDir()})
	start := time.Now()
	for b.Loop() {
		s.Tick(time.Now())
	}
	tick := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(peer, "old-ns/op")
	b.ReportMetric(tick/peer, "x-old")
}
