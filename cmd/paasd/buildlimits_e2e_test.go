package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/builder"
)

func init() { scriptCmds["build-containers"] = cmdBuildContainers }

// buildWatch is a running "build-containers start": the limits of each
// container the installation's buildpacks builds created, as the daemon
// holds them.
type buildWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   []string // "NAME memory M cpus C", or what went wrong
}

var buildWatches sync.Map // WORK -> *buildWatch

// cmdBuildContainers: "build-containers start" watches the Docker events
// for the containers the installation's buildpacks builds create (the CNB
// lifecycle's, labelled paas.build=NAME) and inspects each as it is made;
// "build-containers stop MEMORY_BYTES NANO_CPUS" stops, prints them and
// fails unless there was at least one and every one had these limits.
func cmdBuildContainers(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	switch {
	case len(args) == 1 && args[0] == "start":
		opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
		if h := ts.Getenv("DOCKER_HOST"); h != "" {
			opts = append(opts, client.WithHost(h))
		}
		cli, err := client.NewClientWithOpts(opts...)
		ts.Check(err)
		ctx, cancel := context.WithCancel(context.Background())
		w := &buildWatch{cancel: cancel, done: make(chan struct{})}
		if _, loaded := buildWatches.LoadOrStore(work, w); loaded {
			cancel()
			ts.Fatalf("build-containers already started")
		}
		msgs, errs := cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("event", string(events.ActionCreate)),
			filters.Arg("label", builder.LabelBuild+"="+ts.Getenv("PAAS_NAME")),
		)})
		go func() {
			defer close(w.done)
			defer cli.Close()
			for {
				select {
				case <-ctx.Done():
					return
				case err := <-errs:
					if ctx.Err() == nil {
						w.add(fmt.Sprintf("docker events: %v", err))
					}
					return
				case m := <-msgs:
					c, err := cli.ContainerInspect(ctx, m.Actor.ID)
					if err != nil || c.HostConfig == nil {
						w.add(fmt.Sprintf("%s: not inspected: %v", m.Actor.Attributes["name"], err))
						continue
					}
					w.add(fmt.Sprintf("%s memory %d cpus %d", c.Name, c.HostConfig.Memory, c.HostConfig.NanoCPUs))
				}
			}
		}()
	case len(args) == 3 && args[0] == "stop":
		v, ok := buildWatches.LoadAndDelete(work)
		if !ok {
			ts.Fatalf("build-containers not started")
		}
		w := v.(*buildWatch)
		w.cancel()
		<-w.done
		memory, err := strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
		cpus, err := strconv.ParseInt(args[2], 10, 64)
		ts.Check(err)
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, line := range w.seen {
			fmt.Fprintln(ts.Stdout(), line)
		}
		if len(w.seen) == 0 {
			ts.Fatalf("no buildpacks build container of this installation was created")
		}
		want := fmt.Sprintf("memory %d cpus %d", memory, cpus)
		var bad []string
		for _, line := range w.seen {
			if !strings.HasSuffix(line, want) {
				bad = append(bad, line)
			}
		}
		if len(bad) > 0 {
			ts.Fatalf("build containers not under %s: %q", want, bad)
		}
	default:
		ts.Fatalf("usage: build-containers start | build-containers stop MEMORY_BYTES NANO_CPUS")
	}
}

func (w *buildWatch) add(line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, line)
}
