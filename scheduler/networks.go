package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

// Apps' networks.
//
// Each app's tasks join a network of its own, so an app reaches its own
// tasks and nothing of another app's. The router must reach every app, so it
// is on every app network. A Swarm task cannot be connected to a network
// after it started (docker network connect on a task container is not
// supported: Swarm's allocator does not know of it), so adding a network to
// the router means updating its service, a replacement of every router
// (without a refused request: the sockets are handed over, but the
// replacement takes seconds and drops the router's in-memory state). So
// that creating an app does not do that, the router holds a pool of app
// networks made ahead: an app is lent a free one at its first rollout and
// gives it back when it is destroyed; only when the pool runs out does the
// scheduler make AppNetworkBatch more and update the router once.

// AppNetworkBatch is how many app networks are made at a time, by default.
const AppNetworkBatch = 8

// ErrForeignNetwork is a network name another installation, or something
// not paas, holds.
var ErrForeignNetwork = errors.New("the network belongs to something else")

// NetworkInfo is a network of the installation as the network commands show it.
type NetworkInfo struct {
	Name       string
	ID         string
	Role       string // paas.NetworkRole*
	Driver     string
	Scope      string
	Attachable bool
	Internal   bool
	Subnets    []string
	Created    string
	Owner      string // who made it (network:create)
}

// AppNetworks lists the pool of app networks, by name.
func (s *Swarm) AppNetworks(ctx context.Context) ([]string, error) {
	nets, err := s.networks(ctx, paas.NetworkRoleApp)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(nets))
	for _, n := range nets {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names, nil
}

// AddAppNetworks makes a batch more app networks and attaches the
// router to them (one replacement of the routers, when they run).
func (s *Swarm) AddAppNetworks(ctx context.Context) error {
	if err := s.makeAppNetworks(ctx, s.netBatch); err != nil {
		return err
	}
	return s.attachRouter(ctx)
}

// RestoreAppNetworks makes again those of names (the apps' own networks,
// as a restored store records them) that this Swarm does not have, and
// puts the router on them (one replacement of the routers). It returns how
// many it made; a name that is not one of the installation's app networks
// is refused.
func (s *Swarm) RestoreAppNetworks(ctx context.Context, names []string) (int, error) {
	have, err := s.AppNetworks(ctx)
	if err != nil {
		return 0, err
	}
	prefix := objectName(s.name, "app") + "-"
	made := 0
	for _, name := range names {
		if name == "" || slices.Contains(have, name) {
			continue
		}
		if !strings.HasPrefix(name, prefix) {
			return made, fmt.Errorf("network %s is not an app network of %s", name, s.name)
		}
		if err := s.createNetwork(ctx, name, paas.NetworkRoleApp, nil); err != nil {
			return made, err
		}
		have = append(have, name)
		made++
	}
	if made == 0 {
		return 0, nil
	}
	return made, s.attachRouter(ctx)
}

func (s *Swarm) makeAppNetworks(ctx context.Context, n int) error {
	for range n {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name := objectName(s.name, "app", hex.EncodeToString(b))
		if err := s.createNetwork(ctx, name, paas.NetworkRoleApp, nil); err != nil {
			return err
		}
	}
	return nil
}

// ensureAppNetworkPool makes the first batch of app networks.
func (s *Swarm) ensureAppNetworkPool(ctx context.Context) error {
	have, err := s.AppNetworks(ctx)
	if err != nil || len(have) > 0 {
		return err
	}
	return s.makeAppNetworks(ctx, s.netBatch)
}

// routerNetworks are the networks the router is on: the installation's
// (apps deployed before apps had networks of their own) and every app
// network.
func (s *Swarm) routerNetworks(ctx context.Context) ([]swarm.NetworkAttachmentConfig, error) {
	apps, err := s.AppNetworks(ctx)
	if err != nil {
		return nil, err
	}
	nets := []swarm.NetworkAttachmentConfig{{Target: s.network}}
	for _, n := range apps {
		nets = append(nets, swarm.NetworkAttachmentConfig{Target: n})
	}
	return nets, nil
}

// attachRouter updates the router service to be on every app network, and
// waits for the replaced routers to have stopped.
func (s *Swarm) attachRouter(ctx context.Context) error {
	s.routerMu.Lock()
	defer s.routerMu.Unlock()
	if s.lastRouter == nil {
		return nil // no router yet: EnsureRouter attaches it to all of them
	}
	spec, err := s.routerSpec(ctx, *s.lastRouter)
	if err != nil {
		return err
	}
	return s.ensureRouterService(ctx, spec, RoleRouter)
}

// createNetwork creates an attachable overlay network of the installation.
func (s *Swarm) createNetwork(ctx context.Context, name, role string, labels map[string]string) error {
	l := map[string]string{paas.LabelInstallation: s.name, paas.LabelNetworkRole: role}
	for k, v := range labels {
		l[k] = v
	}
	_, err := s.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: true, Labels: l})
	if err != nil {
		return fmt.Errorf("create network %s: %w", name, err)
	}
	s.log.Info("created network", "network", name, "role", role)
	return nil
}

// networks lists the installation's networks of role ("" every role).
func (s *Swarm) networks(ctx context.Context, role string) ([]network.Summary, error) {
	f := filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+s.name))
	if role != "" {
		f.Add("label", paas.LabelNetworkRole+"="+role)
	}
	nets, err := s.cli.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	// Check the label again: a daemon that ignored the filter must not
	// hand out another installation's network.
	return slices.DeleteFunc(nets, func(n network.Summary) bool {
		return n.Labels[paas.LabelInstallation] != s.name || role != "" && n.Labels[paas.LabelNetworkRole] != role
	}), nil
}

// CreateUserNetwork creates network:create's network, named name as given
// (Dokku's names are Docker's). A name another installation or anything
// else holds is refused with ErrForeignNetwork; one of this installation's
// is refused as existing.
func (s *Swarm) CreateUserNetwork(ctx context.Context, name, owner string) error {
	if err := paas.ValidateNetworkName(name); err != nil {
		return err
	}
	s.netMu.Lock()
	defer s.netMu.Unlock()
	n, err := s.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	switch {
	case err == nil && n.Labels[paas.LabelInstallation] == s.name:
		return fmt.Errorf("network %s already exists", name)
	case err == nil:
		return fmt.Errorf("network %s: %w (another installation's, or not made by paas): choose another name", name, ErrForeignNetwork)
	case !cerrdefs.IsNotFound(err):
		return fmt.Errorf("inspect network %s: %w", name, err)
	}
	return s.createNetwork(ctx, name, paas.NetworkRoleUser, map[string]string{paas.LabelNetworkOwner: owner})
}

// UserNetwork returns network:create's network name, or an error when the
// name is no network of this installation's that apps may join.
func (s *Swarm) UserNetwork(ctx context.Context, name string) (NetworkInfo, error) {
	if err := paas.ValidateNetworkName(name); err != nil {
		return NetworkInfo{}, err
	}
	n, err := s.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		return NetworkInfo{}, fmt.Errorf("network %s does not exist: create it with network:create %s", name, name)
	case err != nil:
		return NetworkInfo{}, fmt.Errorf("inspect network %s: %w", name, err)
	case n.Labels[paas.LabelInstallation] != s.name:
		return NetworkInfo{}, fmt.Errorf("network %s: %w (another installation's, or not made by paas)", name, ErrForeignNetwork)
	case n.Labels[paas.LabelNetworkRole] != paas.NetworkRoleUser:
		return NetworkInfo{}, fmt.Errorf("network %s is paas's own, not one made with network:create", name)
	}
	return infoOf(n), nil
}

func infoOf(n network.Inspect) NetworkInfo {
	info := NetworkInfo{
		Name: n.Name, ID: n.ID, Role: n.Labels[paas.LabelNetworkRole], Driver: n.Driver, Scope: n.Scope,
		Attachable: n.Attachable, Internal: n.Internal, Owner: n.Labels[paas.LabelNetworkOwner], Created: n.Created.UTC().Format("2006-01-02T15:04:05Z"),
	}
	for _, c := range n.IPAM.Config {
		if c.Subnet != "" {
			info.Subnets = append(info.Subnets, c.Subnet)
		}
	}
	return info
}

// UserNetworks lists network:create's networks, by name.
func (s *Swarm) UserNetworks(ctx context.Context) ([]NetworkInfo, error) {
	nets, err := s.networks(ctx, paas.NetworkRoleUser)
	if err != nil {
		return nil, err
	}
	out := make([]NetworkInfo, 0, len(nets))
	for _, n := range nets {
		out = append(out, infoOf(network.Inspect(n)))
	}
	slices.SortFunc(out, func(a, b NetworkInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveUserNetwork removes network:create's network. Docker refuses while
// a task or container is on it; the caller checks that no app is set to
// join it.
func (s *Swarm) RemoveUserNetwork(ctx context.Context, name string) error {
	info, err := s.UserNetwork(ctx, name)
	if err != nil {
		return err
	}
	if err := s.cli.NetworkRemove(ctx, info.ID); err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	// This node may show a removed overlay network for a moment after the
	// cluster forgot it: return once it is gone here too.
	// (Its tasks' containers leave it as Swarm removes them.)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if _, err := s.cli.NetworkInspect(ctx, name, network.InspectOptions{}); cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.log.Warn("a removed network is still listed on this node", "network", name)
	return nil
}

// networksOf returns the networks rel's tasks join: the release's, else
// (a release made before apps had networks of their own) the installation's.
func (s *Swarm) networksOf(rel *paas.Release) []string {
	if len(rel.Networks) > 0 {
		return rel.Networks
	}
	return []string{s.network}
}

// routedOn tells whether n is a network the router reaches tasks on: an
// app network of the installation's, or the installation's own.
func (s *Swarm) routedOn(n swarm.Network) bool {
	l := n.Spec.Labels
	return n.Spec.Name == s.network || l[paas.LabelInstallation] == s.name && l[paas.LabelNetworkRole] == paas.NetworkRoleApp
}
