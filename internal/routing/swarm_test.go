package routing

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"paas/builder/buildertest"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/router"
	"paas/router/contract"
)

// staticRoutes is the backends a DockerSource would find.
type staticRoutes struct{ t router.Table }

func (s staticRoutes) Routes(context.Context) (router.Table, error) { return s.t, nil }

// TestPublishSwarm publishes route configuration to the real Swarm and reads
// it back as the router does.
func TestPublishSwarm(t *testing.T) {
	cli := buildertest.Docker(t) // Swarm configs need a manager: scripts/install.sh --deps
	inst := buildertest.Unique("rt")
	ctx := t.Context()
	list := func() []swarm.Config {
		cfgs, err := cli.ConfigList(context.Background(), swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+inst))})
		if err != nil {
			t.Fatal(err)
		}
		return cfgs
	}
	t.Cleanup(func() {
		for _, c := range list() {
			cli.ConfigRemove(context.Background(), c.ID)
		}
	})
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, app := range []string{"web", "api"} {
		if err := st.CreateApp(&paas.App{Name: app}); err != nil {
			t.Fatal(err)
		}
	}
	s := New(cli, st, Options{Installation: inst, Domain: "paas.test", HTTPPort: 80})
	src := router.NewConfigSource(staticRoutes{router.Table{Routes: []router.Route{
		{App: "web", Hosts: []string{"web.paas.test"}, Backends: []router.Backend{{Addr: "10.0.0.1:5000"}}},
	}}}, cli, router.Options{Installation: inst, Domain: "paas.test"})
	hosts := func() []string {
		tbl, err := src.Routes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tbl.Routes[0].Hosts
	}

	if _, err := st.UpdateRouting("web", func(r *paas.Routing) error { r.Domains = []string{"app.example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := hosts(); len(got) != 2 || got[1] != "app.example.com" {
		t.Errorf("hosts %v, want the custom domain added", got)
	}
	first := list()
	if err := s.Publish(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if again := list(); len(again) != 1 || again[0].ID != first[0].ID {
		t.Errorf("publishing the same settings replaced the config: %v -> %v", first, again)
	}

	if _, err := st.UpdateRouting("web", func(r *paas.Routing) error { r.Domains = []string{"new.example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if cfgs := list(); len(cfgs) != 1 || cfgs[0].ID == first[0].ID {
		t.Errorf("after a change: %d configs, want the old one replaced", len(cfgs))
	}
	if got := hosts(); got[1] != "new.example.com" {
		t.Errorf("hosts %v after the change", got)
	}

	if err := st.SetGlobalDomain("apps.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishGlobal(ctx); err != nil {
		t.Fatal(err)
	}
	if got := hosts(); got[0] != "web.apps.example.org" {
		t.Errorf("hosts %v, want the global domain", got)
	}

	// An app gone from the store loses its config on Sync; Forget removes one.
	if _, err := st.UpdateRouting("api", func(r *paas.Routing) error { r.Domains = []string{"api.example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteApp("api"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range list() {
		if c.Spec.Labels[paas.LabelApp] == "api" {
			t.Errorf("config %s of a destroyed app survived Sync", c.Spec.Name)
		}
	}
	// The longest app name still makes a valid Swarm config name.
	long := strings.Repeat("l", 63)
	if err := st.CreateApp(&paas.App{Name: long}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateRouting(long, func(r *paas.Routing) error { r.Domains = []string{"long.example.com"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, long); err != nil {
		t.Fatalf("publish for a 63-character app: %v", err)
	}
	if err := s.Forget(ctx, long); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	for _, c := range list() {
		if c.Spec.Labels[paas.LabelRole] == contract.RoleAppConfig {
			t.Errorf("config %s survived Forget", c.Spec.Name)
		}
	}
}
