package postgres

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"

	"paas/internal/paas"
	"paas/plugins"
)

func TestSchedule(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		spec    string
		match   []string
		noMatch []string
	}{
		{"0 3 * * *", []string{"2026-11-22T03:00:00Z", "2026-01-01T03:00:59Z"}, []string{"2026-11-22T03:01:00Z", "2026-11-22T04:00:00Z"}},
		{"* * * * *", []string{"2026-11-22T00:00:00Z", "2026-11-22T23:59:00Z"}, nil},
		{"*/15 9-17 * * 1-5", []string{"2026-11-23T09:45:00Z", "2026-11-27T17:00:00Z"}, []string{"2026-11-22T10:00:00Z", "2026-11-23T09:44:00Z", "2026-11-23T18:00:00Z"}},
		{"30 2 1,15 * *", []string{"2026-11-01T02:30:00Z", "2026-11-15T02:30:00Z"}, []string{"2026-11-02T02:30:00Z"}},
		{"0 0 * * 7", []string{"2026-11-22T00:00:00Z"}, []string{"2026-11-23T00:00:00Z"}},                          // 7 is Sunday
		{"0 0 13 * 5", []string{"2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z"}, []string{"2026-11-14T00:00:00Z"}}, // day fields OR
		{"0 12 * 6 *", []string{"2026-06-03T12:00:00Z"}, []string{"2026-07-03T12:00:00Z"}},
		{"5-10/5 * * * *", []string{"2026-06-03T12:05:00Z", "2026-06-03T12:10:00Z"}, []string{"2026-06-03T12:06:00Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := parseSchedule(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.match {
				if !s.matches(at(m)) {
					t.Errorf("%s does not match %s", tc.spec, m)
				}
			}
			for _, m := range tc.noMatch {
				if s.matches(at(m)) {
					t.Errorf("%s matches %s", tc.spec, m)
				}
			}
		})
	}
}

func TestScheduleInvalid(t *testing.T) {
	for _, spec := range []string{"", "every day", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "a * * * *", "1,,2 * * * *", "-1 * * * *"} {
		if _, err := parseSchedule(spec); err == nil {
			t.Errorf("parseSchedule(%q) succeeded", spec)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"db", "my-db-2", strings.Repeat("a", maxDBName)} {
		if err := validateName(ok); err != nil {
			t.Errorf("validateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-db", "My", "a_b", "a.b", "a/b", "a b", `a"b`, strings.Repeat("a", maxDBName+1), "$(id)"} {
		if err := validateName(bad); err == nil {
			t.Errorf("validateName(%q) succeeded", bad)
		}
	}
}

func newTestPlugin(t *testing.T) *Postgres {
	return New(Options{Name: "inst", Network: "inst-net", BackupDir: t.TempDir(), Data: plugins.NewMemData()})
}

func TestPrune(t *testing.T) {
	p := newTestPlugin(t)
	dir := p.backupDir("db")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	for i := range 5 {
		name := "db-" + base.Add(time.Duration(i)*time.Hour).Format(backupTimeFormat) + ".dump"
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// files that are not backups of db are never touched
	for _, other := range []string{"notes.txt", ".partial-123", "db-garbage.dump"} {
		os.WriteFile(filepath.Join(dir, other), nil, 0o600)
	}
	if err := p.prune("db", 2); err != nil {
		t.Fatal(err)
	}
	kept, err := p.keptBackups("db")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range kept {
		got = append(got, b.Time.Format("15:04"))
	}
	if want := []string{"07:00", "06:00"}; !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for _, other := range []string{"notes.txt", ".partial-123", "db-garbage.dump"} {
		if _, err := os.Stat(filepath.Join(dir, other)); err != nil {
			t.Errorf("%s removed", other)
		}
	}
}

func TestAccessAndLinksBlockDelete(t *testing.T) {
	p := newTestPlugin(t)
	db := &Database{Name: "shop", Owner: "alice", Password: "secret/with:chars@", Links: []string{"web"}}
	raw, _ := json.Marshal(db)
	p.opts.Data.Update("shop", func([]byte) ([]byte, error) { return raw, nil })

	for _, tc := range []struct {
		id paas.Identity
		ok bool
	}{{paas.Identity{Name: "alice"}, true}, {paas.Identity{Name: "root", Admin: true}, true}, {paas.Identity{Name: "bob"}, false}} {
		_, err := p.get(tc.id, "shop")
		if (err == nil) != tc.ok {
			t.Errorf("get as %+v = %v", tc.id, err)
		}
		if err != nil && err.Error() != "Postgres database shop does not exist" {
			t.Errorf("get as %+v = %q", tc.id, err)
		}
	}
	if err := p.preDelete(context.Background(), plugins.Event{Args: []string{"web"}}); err == nil || !strings.Contains(err.Error(), "postgres:unlink shop web") {
		t.Fatalf("pre-delete of a linked app = %v", err)
	}
	if err := p.preDelete(context.Background(), plugins.Event{Args: []string{"other"}}); err != nil {
		t.Fatalf("pre-delete of an unlinked app = %v", err)
	}
	if got, want := p.URL(db), "postgres://postgres:secret%2Fwith%3Achars%40@inst-pg-shop:5432/shop?sslmode=disable"; got != want {
		t.Fatalf("URL = %s, want %s", got, want)
	}
}

// A renamed app keeps its links (post-app-rename OLD NEW).
func TestRenameKeepsLinks(t *testing.T) {
	p := newTestPlugin(t)
	for name, links := range map[string][]string{"shop": {"web", "admin"}, "other": {"admin"}} {
		raw, _ := json.Marshal(&Database{Name: name, Owner: "alice", Links: links})
		p.opts.Data.Update(name, func([]byte) ([]byte, error) { return raw, nil })
	}
	if err := p.postAppRename(context.Background(), plugins.Event{Args: []string{"web", "shop-web"}}); err != nil {
		t.Fatal(err)
	}
	dbs, err := p.all()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, db := range dbs {
		got[db.Name] = db.Links
	}
	if !slices.Equal(got["shop"], []string{"shop-web", "admin"}) || !slices.Equal(got["other"], []string{"admin"}) {
		t.Fatalf("links after the rename: %v", got)
	}
	if err := p.preDelete(context.Background(), plugins.Event{Args: []string{"shop-web"}}); err == nil {
		t.Fatal("the renamed app could be destroyed while linked")
	}
}

func TestSpec(t *testing.T) {
	p := newTestPlugin(t)
	db := &Database{Name: "shop", Password: "s3cret", Volume: "inst-pg-shop-1a2b3c-data"}
	secret := &swarm.SecretReference{SecretID: "sec1", SecretName: "inst-pg-shop-1a2b3c", File: &swarm.SecretReferenceFileTarget{Name: "postgres-password"}}
	s := p.spec(db, "node1", secret)
	c := s.TaskTemplate.ContainerSpec
	switch {
	case s.Name != "inst-pg-shop" || s.Labels[paas.LabelInstallation] != "inst" || s.Labels[labelDatabase] != "shop":
		t.Fatalf("annotations %+v", s.Annotations)
	case s.EndpointSpec.Mode != swarm.ResolutionModeDNSRR || len(s.EndpointSpec.Ports) != 0:
		t.Fatalf("endpoint %+v: want dnsrr and no published port", s.EndpointSpec)
	case len(c.Mounts) != 1 || c.Mounts[0].Source != "inst-pg-shop-1a2b3c-data" || c.Mounts[0].Target != dataDir:
		t.Fatalf("mounts %+v", c.Mounts)
	case c.Mounts[0].VolumeOptions == nil || c.Mounts[0].VolumeOptions.Labels[labelDatabase] != "shop":
		t.Fatalf("volume options %+v: the node must create the volume labelled", c.Mounts[0].VolumeOptions)
	case len(s.TaskTemplate.Networks) != 1 || s.TaskTemplate.Networks[0].Target != "inst-net":
		t.Fatalf("networks %+v", s.TaskTemplate.Networks)
	case !slices.Equal(s.TaskTemplate.Placement.Constraints, []string{"node.id==node1"}):
		t.Fatalf("placement %+v", s.TaskTemplate.Placement)
	case len(c.Secrets) != 1 || c.Secrets[0] != secret || !slices.Equal(c.Env, []string{"POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password"}):
		t.Fatalf("secrets %+v env %v: the password is a secret's file", c.Secrets, c.Env)
	case c.Image != DefaultImage:
		t.Fatalf("image %s", c.Image)
	}
	if raw, _ := json.Marshal(s); strings.Contains(string(raw), db.Password) {
		t.Fatalf("the password is in the spec: %s", raw)
	}
	// A database created before volumes were named per creation keeps its volume.
	if got := p.spec(&Database{Name: "old"}, "node1", nil).TaskTemplate.ContainerSpec.Mounts[0].Source; got != "inst-pg-old-data" {
		t.Fatalf("volume of an old database = %s", got)
	}
}

// fakeNodes is the Swarm's node list, for placement.
type fakeNodes struct {
	DockerAPI
	local string
	nodes []swarm.Node
}

func (f *fakeNodes) Info(context.Context) (system.Info, error) {
	return system.Info{Swarm: swarm.Info{NodeID: f.local}}, nil
}

func (f *fakeNodes) NodeList(context.Context, swarm.NodeListOptions) ([]swarm.Node, error) {
	return slices.Clone(f.nodes), nil
}

func TestPlacement(t *testing.T) {
	node := func(id, host string, state swarm.NodeState, avail swarm.NodeAvailability) swarm.Node {
		return swarm.Node{ID: id, Description: swarm.NodeDescription{Hostname: host},
			Status: swarm.NodeStatus{State: state}, Spec: swarm.NodeSpec{Availability: avail}}
	}
	ready, active := swarm.NodeStateReady, swarm.NodeAvailabilityActive
	cluster := []swarm.Node{
		node("m1", "manager", ready, active),
		node("w2", "worker-b", ready, active),
		node("w1", "worker-a", ready, active),
		node("w3", "worker-c", swarm.NodeStateDown, active),
		node("w4", "worker-d", ready, swarm.NodeAvailabilityDrain),
	}
	drained := slices.Clone(cluster)
	drained[0] = node("m1", "manager", ready, swarm.NodeAvailabilityDrain)
	tests := []struct {
		name   string
		nodes  []swarm.Node
		want   string
		got    string // node ID
		errHas string
	}{
		{name: "this node by default", nodes: cluster, got: "m1"},
		{name: "a node by name", nodes: cluster, want: "worker-b", got: "w2"},
		{name: "a node by ID", nodes: cluster, want: "w1", got: "w1"},
		{name: "this node drained: the first active by name", nodes: drained, got: "w1"},
		{name: "unknown", nodes: cluster, want: "nope", errHas: `no such node "nope"`},
		{name: "down", nodes: cluster, want: "worker-c", errHas: "node worker-c is down"},
		{name: "drained", nodes: cluster, want: "worker-d", errHas: "node worker-d's availability is drain"},
		{name: "nothing usable", nodes: drained[3:], errHas: "no node of the swarm is ready and active"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Options{Docker: &fakeNodes{local: "m1", nodes: tc.nodes}, Name: "inst"})
			n, err := p.placement(context.Background(), tc.want)
			switch {
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("placement(%q) = %s, %v; want an error with %q", tc.want, n.ID, err, tc.errHas)
			case tc.errHas == "" && (err != nil || n.ID != tc.got):
				t.Fatalf("placement(%q) = %s, %v; want %s", tc.want, n.ID, err, tc.got)
			}
		})
	}
}

// fakeClients holds client containers, for removeClients.
type fakeClients struct {
	DockerAPI
	list    []container.Summary
	filter  filters.Args
	removed []string
}

func (f *fakeClients) ContainerList(_ context.Context, opts container.ListOptions) ([]container.Summary, error) {
	f.filter = opts.Filters
	return f.list, nil
}

func (f *fakeClients) ContainerRemove(_ context.Context, id string, _ container.RemoveOptions) error {
	f.removed = append(f.removed, id)
	return nil
}

// A paasd that stopped in the middle of a command left its client
// container: the next one removes it, and no client of a running command.
func TestRemoveClients(t *testing.T) {
	f := &fakeClients{list: []container.Summary{{ID: "a", State: "exited"}, {ID: "b", State: "running"}, {ID: "c", State: "dead"}, {ID: "d", State: "created"}}}
	p := New(Options{Docker: f, Name: "inst"})
	p.removeClients(context.Background())
	if !slices.Equal(f.removed, []string{"a", "c"}) {
		t.Fatalf("removed %v, want the exited and dead ones", f.removed)
	}
	if !f.filter.ExactMatch("label", "paas.installation=inst") || !f.filter.ExactMatch("label", "paas.role=postgres-client") {
		t.Fatalf("listed %v: want this installation's client containers only", f.filter)
	}
}
