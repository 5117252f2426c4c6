package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// ProcessStatus is the state of one process type of an app.
type ProcessStatus struct {
	Process string       `json:"process"`
	Release int          `json:"release"` // release the service spec runs
	Image   string       `json:"image"`   // image the service spec runs
	Desired int          `json:"desired"`
	Running int          `json:"running"`
	Tasks   []TaskStatus `json:"tasks"`
	// Killed are the tasks of its task history killed for memory.
	Killed []Kill `json:"killed,omitempty"`
}

// TaskStatus is the latest task of one slot of a process type.
type TaskStatus struct {
	ID    string `json:"id"`
	Slot  int    `json:"slot"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	Image string `json:"image"`
	// Node is the hostname of the node the task was given to ("" before
	// Swarm placed it).
	Node string `json:"node,omitempty"`
}

// Status returns the state of every process type of app, web first. An app
// with no services has an empty status.
func (s *Swarm) Status(ctx context.Context, app string) ([]ProcessStatus, error) {
	svcs, err := s.appServices(ctx, app)
	if err != nil {
		return nil, err
	}
	out := make([]ProcessStatus, 0, len(svcs))
	var nodes map[string]string // node ID -> hostname, read once
	for _, svc := range svcs {
		ps := ProcessStatus{Process: svc.Spec.Labels[paas.LabelProcess]}
		ps.Release, _ = strconv.Atoi(svc.Spec.Labels[paas.LabelRelease])
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			ps.Image = cs.Image
		}
		if m := svc.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
			ps.Desired = int(*m.Replicas)
		}
		tasks, err := s.tasks(ctx, svc.ID)
		if err != nil {
			return nil, err
		}
		// The newest task of each slot says how that slot is doing; slots
		// above the desired count were scaled away.
		slices.SortFunc(tasks, func(a, b swarm.Task) int { return b.CreatedAt.Compare(a.CreatedAt) })
		seen := map[int]bool{}
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning && t.DesiredState == swarm.TaskStateRunning {
				ps.Running++
			}
			if seen[t.Slot] || t.Slot > ps.Desired {
				continue
			}
			seen[t.Slot] = true
			ts := TaskStatus{ID: t.ID, Slot: t.Slot, State: string(t.Status.State), Error: t.Status.Err}
			if t.Spec.ContainerSpec != nil {
				ts.Image = t.Spec.ContainerSpec.Image
			}
			if t.NodeID != "" {
				if nodes == nil {
					if nodes, err = s.nodeNames(ctx); err != nil {
						return nil, err
					}
				}
				ts.Node = cmp.Or(nodes[t.NodeID], t.NodeID)
			}
			ps.Tasks = append(ps.Tasks, ts)
		}
		slices.SortFunc(ps.Tasks, func(a, b TaskStatus) int { return a.Slot - b.Slot })
		ps.Killed = s.kills(ctx, svc, tasks)
		out = append(out, ps)
	}
	return out, nil
}

// nodeNames maps the Swarm's node IDs to their hostnames.
func (s *Swarm) nodeNames(ctx context.Context) (map[string]string, error) {
	list, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	names := make(map[string]string, len(list))
	for _, n := range list {
		names[n.ID] = n.Description.Hostname
	}
	return names, nil
}

// RemoveAll removes every service, one-off task, network and secret of this
// installation and waits until their containers are gone.
func (s *Swarm) RemoveAll(ctx context.Context) error {
	defer s.changing()()
	inst := filters.Arg("label", paas.LabelInstallation+"="+s.name)
	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(inst)})
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var errs []error
	for _, svc := range svcs {
		if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove service %s: %w", svc.Spec.Name, err))
		}
	}
	if err := s.removeOneOffs(ctx, ""); err != nil {
		errs = append(errs, err)
	}
	if err := s.waitContainersGone(ctx, filters.NewArgs(inst)); err != nil {
		errs = append(errs, err)
	} else if err := s.cli.VolumeRemove(ctx, s.RouterVolumeName(), false); err != nil && !isNotFound(err) {
		// The router's sockets volume of this node only: volumes are
		// local, each other manager keeps its own (empty) one.
		errs = append(errs, fmt.Errorf("remove volume %s: %w", s.RouterVolumeName(), err))
	}
	if err := s.removeNetworks(ctx, filters.NewArgs(inst)); err != nil {
		errs = append(errs, err)
	}
	// The releases' config secrets and the router's cert key secret.
	secrets, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(inst)})
	if err != nil {
		errs = append(errs, fmt.Errorf("list secrets: %w", err))
	}
	for _, sec := range secrets {
		if err := s.cli.SecretRemove(ctx, sec.ID); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", sec.Spec.Name, err))
		}
	}
	return errors.Join(errs...)
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// removeNetworks removes the networks matching f. This node may list a
// removed overlay network for a moment after the cluster forgot it, and
// refuses to remove one whose endpoints are still being torn down, so it
// tries until the list stays empty.
func (s *Swarm) removeNetworks(ctx context.Context, f filters.Args) error {
	deadline := time.Now().Add(20 * time.Second)
	emptyTimes := 0
	var lastErr error
	for {
		nets, err := s.cli.NetworkList(ctx, network.ListOptions{Filters: f})
		if err != nil {
			return fmt.Errorf("list networks: %w", err)
		}
		if len(nets) == 0 {
			if emptyTimes++; emptyTimes >= 2 {
				return nil
			}
		} else {
			emptyTimes = 0
		}
		for _, n := range nets {
			if err := s.cli.NetworkRemove(ctx, n.ID); err != nil && !isNotFound(err) {
				lastErr = fmt.Errorf("remove network %s: %w", n.Name, err)
			}
		}
		if time.Now().After(deadline) {
			if lastErr == nil {
				lastErr = fmt.Errorf("%d network(s) still listed", len(nets))
			}
			return lastErr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ProcessCount is how many tasks of one process type run, and should.
type ProcessCount struct {
	Process string `json:"process"`
	Running int    `json:"running"`
	Desired int    `json:"desired"`
}

// listCounts returns the task counts of every app's process types, by
// app, from ONE list of the installation's services (Docker's service
// status), not a call per app: what a list of many apps shows (Counts).
func (s *Swarm) listCounts(ctx context.Context) (map[string][]ProcessCount, error) {
	f := filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleApp),
	)
	svcs, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: f, Status: true})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	slices.SortFunc(svcs, func(a, b swarm.Service) int {
		return compareProcess(a.Spec.Labels[paas.LabelProcess], b.Spec.Labels[paas.LabelProcess])
	})
	out := map[string][]ProcessCount{}
	for _, svc := range svcs {
		app := svc.Spec.Labels[paas.LabelApp]
		pc := ProcessCount{Process: svc.Spec.Labels[paas.LabelProcess]}
		if m := svc.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
			pc.Desired = int(*m.Replicas)
		}
		if st := svc.ServiceStatus; st != nil {
			pc.Running = int(st.RunningTasks)
		}
		out[app] = append(out[app], pc)
	}
	return out, nil
}
