package scheduler

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// serviceLister answers ServiceList with one service of app "a" whose
// running tasks are running, counting the calls; during is run inside
// the next call (a change that ends while the list is made).
type serviceLister struct {
	DockerAPI
	calls   int
	running uint64
	during  func()
}

func (f *serviceLister) ServiceList(context.Context, swarm.ServiceListOptions) ([]swarm.Service, error) {
	f.calls++
	if f.during != nil {
		f.during()
		f.during = nil
	}
	one := uint64(1)
	return []swarm.Service{{
		Spec:          swarm.ServiceSpec{Annotations: swarm.Annotations{Labels: map[string]string{paas.LabelApp: "a", paas.LabelProcess: "web"}}, Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}}},
		ServiceStatus: &swarm.ServiceStatus{RunningTasks: f.running},
	}}, nil
}

// Counts shares one service list between calls close together, but never
// across a change made through the scheduler: not while one runs, not
// one asked before a change ended, not once CountsTTL passed.
func TestCountsKeptUntilAChange(t *testing.T) {
	ctx := context.Background()
	f := &serviceLister{}
	s := New(f, Options{Name: "inst"})
	counts := func(wantCalls int, wantRunning int) {
		t.Helper()
		got, err := s.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.calls != wantCalls {
			t.Fatalf("%d service lists, want %d", f.calls, wantCalls)
		}
		if len(got["a"]) != 1 || got["a"][0].Running != wantRunning {
			t.Fatalf("counts %+v, want web running %d", got, wantRunning)
		}
	}
	counts(1, 0)
	f.running = 1
	counts(1, 0) // kept: nothing changed here

	done := s.changing() // e.g. a deploy: its wait for the tasks included
	counts(2, 1)
	counts(3, 1) // not kept while it runs
	f.running = 2
	done()
	counts(4, 2) // the state after it, at once
	counts(4, 2)

	f.during = func() { s.changing()() } // a change ends while the list is made
	s.counts.keptAt = s.counts.keptAt.Add(-CountsTTL)
	counts(5, 2)
	counts(6, 2) // that list was not kept

	s.counts.keptAt = s.counts.keptAt.Add(-CountsTTL)
	f.running = 0
	counts(7, 0) // too old
}
