package router

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// fakeDocker answers ServiceList and TaskList from fixtures and records the
// filters it was asked with.
type fakeDocker struct {
	services []swarm.Service
	tasks    []swarm.Task
	err      error

	serviceCalls, taskCalls int
	serviceLabels           []string
	taskLabels, taskStates  []string
}

func (f *fakeDocker) ServiceList(_ context.Context, o swarm.ServiceListOptions) ([]swarm.Service, error) {
	f.serviceCalls++
	f.serviceLabels = o.Filters.Get("label")
	return f.services, f.err
}

func (f *fakeDocker) TaskList(_ context.Context, o swarm.TaskListOptions) ([]swarm.Task, error) {
	f.taskCalls++
	f.taskLabels = o.Filters.Get("label")
	f.taskStates = o.Filters.Get("desired-state")
	return f.tasks, f.err
}

func service(id string, labels map[string]string) swarm.Service {
	s := swarm.Service{ID: id}
	s.Spec.Name = "svc-" + id
	s.Spec.Labels = labels
	return s
}

func webLabels(app string, extra ...string) map[string]string {
	l := map[string]string{
		paas.LabelInstallation: "inst",
		paas.LabelProcess:      paas.WebProcess,
		paas.LabelApp:          app,
		paas.LabelPort:         "5000",
		paas.LabelRouted:       "true",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			delete(l, extra[i])
		} else {
			l[extra[i]] = extra[i+1]
		}
	}
	return l
}

func task(serviceID string, desired, state swarm.TaskState, attachments ...swarm.NetworkAttachment) swarm.Task {
	t := swarm.Task{ServiceID: serviceID, DesiredState: desired, NetworksAttachments: attachments}
	t.Status.State = state
	return t
}

func attach(network string, addrs ...string) swarm.NetworkAttachment {
	a := swarm.NetworkAttachment{Addresses: addrs}
	a.Network.Spec.Name = network
	a.Network.Spec.Ingress = network == "ingress"
	return a
}

const running = swarm.TaskStateRunning

func TestDockerSourceTable(t *testing.T) {
	tests := []struct {
		name     string
		network  string
		services []swarm.Service
		tasks    []swarm.Task
		want     []Route
	}{
		{
			name:     "one app, one running task",
			services: []swarm.Service{service("s1", webLabels("hello"))},
			tasks:    []swarm.Task{task("s1", running, running, attach("ingress", "10.0.0.9/24"), attach("inst-net", "10.0.1.5/24"))},
			want:     []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.1.5:5000")}},
		},
		{
			name:     "hosts label, port label, spaces and case",
			services: []swarm.Service{service("s1", webLabels("hello", paas.LabelHosts, " WWW.Hello.Test , ,api.hello.test.", paas.LabelPort, "8080"))},
			tasks:    []swarm.Task{task("s1", running, running, attach("inst-net", "10.0.1.5/24"))},
			want:     []Route{{App: "hello", Hosts: []string{"api.hello.test", "hello.example.test", "www.hello.test"}, Backends: backends("10.0.1.5:8080")}},
		},
		{
			name: "only routed services send traffic; an unrouted one still makes the app known",
			services: []swarm.Service{
				service("s1", webLabels("hello", paas.LabelRouted, "")),
				service("s2", webLabels("hello", paas.LabelRouted, "true")),
				service("s3", webLabels("idle", paas.LabelRouted, "false")),
			},
			tasks: []swarm.Task{
				task("s1", running, running, attach("inst-net", "10.0.1.5/24")),
				task("s2", running, running, attach("inst-net", "10.0.1.6/24")),
				task("s3", running, running, attach("inst-net", "10.0.1.7/24")),
			},
			want: []Route{
				{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.1.6:5000")},
				{App: "idle", Hosts: []string{"idle.example.test"}, Backends: []Backend{}},
			},
		},
		{
			name:     "no port label means the default port",
			services: []swarm.Service{service("s1", webLabels("hello", paas.LabelPort, ""))},
			tasks:    []swarm.Task{task("s1", running, running, attach("inst-net", "10.0.1.5/24"))},
			want:     []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.1.5:5000")}},
		},
		{
			name:     "bad port label: known app, no backends",
			services: []swarm.Service{service("s1", webLabels("hello", paas.LabelPort, "http"))},
			tasks:    []swarm.Task{task("s1", running, running, attach("inst-net", "10.0.1.5/24"))},
			want:     []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: []Backend{}}},
		},
		{
			name:     "only tasks running and meant to run",
			services: []swarm.Service{service("s1", webLabels("hello"))},
			tasks: []swarm.Task{
				task("s1", running, running, attach("inst-net", "10.0.1.5/24")),
				task("s1", running, swarm.TaskStateStarting, attach("inst-net", "10.0.1.6/24")),
				task("s1", swarm.TaskStateShutdown, running, attach("inst-net", "10.0.1.7/24")),
				task("s1", running, swarm.TaskStateFailed, attach("inst-net", "10.0.1.8/24")),
			},
			want: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.1.5:5000")}},
		},
		{
			name:     "tasks without an address on the network",
			services: []swarm.Service{service("s1", webLabels("hello"))},
			tasks: []swarm.Task{
				task("s1", running, running, attach("other-net", "10.0.2.5/24")),
				task("s1", running, running),
			},
			want: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: []Backend{}}},
		},
		{
			name:     "no network configured: any but the ingress",
			network:  "-",
			services: []swarm.Service{service("s1", webLabels("hello"))},
			tasks:    []swarm.Task{task("s1", running, running, attach("ingress", "10.0.0.9/24"), attach("whatever", "10.0.3.5/24"))},
			want:     []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.3.5:5000")}},
		},
		{
			name: "two services of one app (two releases) merge",
			services: []swarm.Service{
				service("s1", webLabels("hello", paas.LabelRelease, "1")),
				service("s2", webLabels("hello", paas.LabelRelease, "2", paas.LabelPort, "6000")),
			},
			tasks: []swarm.Task{
				task("s1", running, running, attach("inst-net", "10.0.1.5/24")),
				task("s2", running, running, attach("inst-net", "10.0.1.6/24")),
			},
			want: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: backends("10.0.1.5:5000", "10.0.1.6:6000")}},
		},
		{
			name: "services of others and other process types are not routed",
			services: []swarm.Service{
				service("s1", webLabels("hello")),
				service("s2", webLabels("other", paas.LabelInstallation, "someone-else")),
				service("s3", webLabels("worker", paas.LabelProcess, "worker")),
				service("s4", webLabels("Bad_Name")),
			},
			tasks: []swarm.Task{
				task("s2", running, running, attach("inst-net", "10.0.1.6/24")),
				task("s9", running, running, attach("inst-net", "10.0.1.9/24")),
			},
			want: []Route{{App: "hello", Hosts: []string{"hello.example.test"}, Backends: []Backend{}}},
		},
		{
			name: "a host name belongs to one app",
			services: []swarm.Service{
				service("s1", webLabels("alpha", paas.LabelHosts, "shared.test,beta.example.test")),
				service("s2", webLabels("beta", paas.LabelHosts, "shared.test,bad/host")),
			},
			want: []Route{
				{App: "alpha", Hosts: []string{"alpha.example.test", "shared.test"}, Backends: []Backend{}},
				{App: "beta", Hosts: []string{"beta.example.test"}, Backends: []Backend{}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			network := "inst-net"
			if tc.network == "-" {
				network = ""
			}
			api := &fakeDocker{services: tc.services, tasks: tc.tasks}
			src := NewDockerSource(api, Options{Installation: "inst", Domain: "Example.Test", Network: network, Log: discardLog()})
			got, err := src.Routes(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(Table{Routes: tc.want}) {
				t.Errorf("Routes() =\n %+v\nwant\n %+v", got.Routes, tc.want)
			}
			if api.serviceCalls != 1 || api.taskCalls != 1 {
				t.Errorf("API calls: %d ServiceList, %d TaskList; want one each", api.serviceCalls, api.taskCalls)
			}
			wantLabels := []string{"paas.installation=inst", "paas.process=web"}
			for what, got := range map[string][]string{"services": api.serviceLabels, "tasks": api.taskLabels} {
				slices.Sort(got)
				if !slices.Equal(got, wantLabels) {
					t.Errorf("%s label filter = %q, want %q", what, got, wantLabels)
				}
			}
			if !slices.Equal(api.taskStates, []string{"running"}) {
				t.Errorf("task desired-state filter = %q, want [running]", api.taskStates)
			}
		})
	}
}

func TestDockerSourceErrors(t *testing.T) {
	t.Run("API error", func(t *testing.T) {
		boom := errors.New("boom")
		src := NewDockerSource(&fakeDocker{err: boom}, Options{Installation: "inst", Log: discardLog()})
		if _, err := src.Routes(t.Context()); !errors.Is(err, boom) {
			t.Errorf("err = %v, want it to wrap %v", err, boom)
		}
	})
	t.Run("no installation name", func(t *testing.T) {
		api := &fakeDocker{}
		src := NewDockerSource(api, Options{Log: discardLog()})
		if _, err := src.Routes(t.Context()); err == nil {
			t.Error("no error without an installation name")
		}
		if api.serviceCalls != 0 {
			t.Error("listed services without an installation name")
		}
	})
}
