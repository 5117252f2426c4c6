package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/builder/buildertest"
	"paas/internal/clustertest"
	"paas/internal/paas"
	"paas/plugins"
	"paas/plugins/postgres"
)

// TestDatabaseOnWorker runs a database on a worker of a real 3-node swarm
// whose daemons paasd has no socket of: create pins it there, info says
// where, and connect (plain and with a terminal), backup and restore reach
// it from the manager over the overlay network and round-trip real data;
// a bad dump changes nothing; destroy empties the volume on the worker, and
// the name can be used again.
func TestDatabaseOnWorker(t *testing.T) {
	host := buildertest.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := host.ImageInspect(ctx, postgres.DefaultImage); err != nil {
		buildertest.Missing(t, "the Postgres image "+postgres.DefaultImage+" is missing: scripts/postgres/build.sh builds it")
	}

	c := clustertest.Up(t, 3)
	start := time.Now()
	c.Load(t, postgres.DefaultImage)
	t.Logf("%s loaded into 3 nodes in %.1fs", postgres.DefaultImage, time.Since(start).Seconds())
	cli := c.Client(t, "") // the manager's daemon: all paasd talks to
	worker, other := c.Nodes[1], c.Nodes[2]

	name := c.Name // unique per run; also the installation prefix
	netName := name + "-net"
	if _, err := cli.NetworkCreate(ctx, netName, network.CreateOptions{Driver: "overlay", Attachable: true}); err != nil {
		t.Fatalf("create overlay: %v", err)
	}
	p := postgres.New(postgres.Options{
		Docker: cli, Name: name, Network: netName, BackupDir: t.TempDir(),
		Data: plugins.NewMemData(), ReadyTimeout: 3 * time.Minute,
	})
	admin := paas.Identity{Name: "admin", Admin: true}

	// Bad placements: an unknown node, a drained one.
	if _, err := run(ctx, t, p, admin, nil, "postgres:create", "shop", "--node", "no-such-node"); err == nil || !errors.Is(err, postgres.ErrNoNode) {
		t.Fatalf("create on an unknown node: %v", err)
	}
	drain(ctx, t, cli, other.Name, swarm.NodeAvailabilityDrain)
	if _, err := run(ctx, t, p, admin, nil, "postgres:create", "shop", "--node", other.Name); err == nil || !strings.Contains(err.Error(), "availability is drain") {
		t.Fatalf("create on a drained node: %v", err)
	}
	drain(ctx, t, cli, other.Name, swarm.NodeAvailabilityActive)

	start = time.Now()
	out, err := run(ctx, t, p, admin, nil, "postgres:create", "shop", "--node", worker.Name)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	t.Logf("created on %s in %.1fs", worker.Name, time.Since(start).Seconds())
	if !strings.Contains(out, "Starting Postgres database shop on node "+worker.Name) {
		t.Errorf("create's output does not name the node:\n%s", out)
	}

	// The server runs on the worker, and nothing of it on the manager.
	workerID := nodeID(ctx, t, cli, worker.Name)
	tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", name+"-pg-shop"), filters.Arg("desired-state", "running"))})
	if err != nil || len(tasks) != 1 || tasks[0].NodeID != workerID {
		t.Fatalf("tasks of the database: %+v %v, want one on %s", tasks, err, workerID)
	}
	label := filters.NewArgs(filters.Arg("label", "paas.postgres=shop"), filters.Arg("label", "paas.installation="+name))
	if cs := containers(ctx, t, cli, label); len(cs) != 0 {
		t.Fatalf("containers of the database on the manager: %+v", cs)
	}
	if cs := containers(ctx, t, c.Client(t, worker.Name), label); len(cs) != 1 {
		t.Fatalf("containers of the database on %s: %+v, want its server", worker.Name, cs)
	}

	out, err = run(ctx, t, p, admin, nil, "postgres:info", "shop", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Node   string `json:"node"`
		NodeID string `json:"node_id"`
		Status string `json:"status"`
		Volume string `json:"volume"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info json %q: %v", out, err)
	}
	if info.Node != worker.Name || info.NodeID != workerID || info.Status != "running" {
		t.Errorf("info: node %q (%s), status %s; want %s (%s), running", info.Node, info.NodeID, info.Status, worker.Name, workerID)
	}
	out, err = run(ctx, t, p, admin, nil, "postgres:info", "shop")
	if err != nil || !strings.Contains(out, "Node:            "+worker.Name+" (pinned") {
		t.Errorf("info: %v\n%s", err, out)
	}

	// Data in, through psql on this session's input.
	const load = `CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes SELECT i, md5(i::text) FROM generate_series(1, 5000) i;
INSERT INTO notes VALUES (0, 'café ☕');
`
	if out, err := run(ctx, t, p, admin, strings.NewReader(load), "postgres:connect", "shop"); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	const query = "SELECT count(*) || ' ' || (SELECT body FROM notes WHERE id = 0) || ' ' || md5(string_agg(body, ',' ORDER BY id)) FROM notes;\n"
	want := connectLine(ctx, t, p, admin, query)
	if !strings.HasPrefix(want, "5001 café ☕ ") {
		t.Fatalf("after the load: %q", want)
	}

	start = time.Now()
	if got := connectLine(ctx, t, p, admin, "SELECT 1;\n"); got != "1" {
		t.Fatalf("SELECT 1: %q", got)
	}
	t.Logf("a one-row query from the manager's client container: %.1fs", time.Since(start).Seconds())

	// A backup, streamed from the worker.
	start = time.Now()
	dump, err := run(ctx, t, p, admin, nil, "postgres:backup", "shop")
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	t.Logf("backup: %d bytes in %.1fs", len(dump), time.Since(start).Seconds())
	if !strings.HasPrefix(dump, "PGDMP") {
		t.Fatalf("the backup is not a custom-format dump: %q", dump[:min(len(dump), 40)])
	}

	// Change everything, then restore the dump: the data is back.
	if out, err := run(ctx, t, p, admin, strings.NewReader("DELETE FROM notes; INSERT INTO notes VALUES (1, 'changed');\n"), "postgres:connect", "shop"); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	if got := connectLine(ctx, t, p, admin, "SELECT count(*) FROM notes;\n"); got != "1" {
		t.Fatalf("after the change: %q rows", got)
	}
	start = time.Now()
	out, err = run(ctx, t, p, admin, strings.NewReader(dump), "postgres:restore", "shop")
	if err != nil || !strings.Contains(out, "Restored shop") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("restore in %.1fs", time.Since(start).Seconds())
	if got := connectLine(ctx, t, p, admin, query); got != want {
		t.Fatalf("after the restore: %q, want %q", got, want)
	}

	// A bad dump changes nothing.
	if out, err := run(ctx, t, p, admin, strings.NewReader("this is not a dump\n"), "postgres:restore", "shop"); err == nil || !strings.Contains(err.Error(), "contents are unchanged") {
		t.Fatalf("restore of a bad dump: %v\n%s", err, out)
	}
	if got := connectLine(ctx, t, p, admin, query); got != want {
		t.Fatalf("after a bad restore: %q, want %q", got, want)
	}

	// psql with a terminal (ssh -t): it prompts, and \q ends it.
	tty := &terminal{Reader: strings.NewReader("\\pset pager off\nSELECT 40 + 2 AS answer;\n\\q\n"), size: [2]int{100, 30}}
	out, err = run(ctx, t, p, admin, tty, "postgres:connect", "shop")
	if err != nil || !strings.Contains(out, "shop=# ") || !strings.Contains(out, "42") {
		t.Fatalf("connect with a terminal: %v\n%q", err, out)
	}

	// Every client container is gone.
	client := filters.NewArgs(filters.Arg("label", "paas.role=postgres-client"), filters.Arg("label", "paas.installation="+name))
	if cs := containers(ctx, t, cli, client); len(cs) != 0 {
		t.Errorf("client containers left on the manager: %+v", cs)
	}

	start = time.Now()
	out, err = run(ctx, t, p, admin, nil, "postgres:destroy", "shop", "--force")
	if err != nil {
		t.Fatalf("destroy: %v\n%s", err, out)
	}
	t.Logf("destroy, its volume emptied on %s, in %.1fs", worker.Name, time.Since(start).Seconds())
	if !strings.Contains(out, "Its data on node "+worker.Name+" is deleted; the empty volume "+info.Volume+" stays there") {
		t.Errorf("destroy does not say the data on %s is deleted:\n%s", worker.Name, out)
	}
	// The nodes share this machine's filesystem: the volume's directory
	// is readable here.
	vol, err := c.Client(t, worker.Name).VolumeInspect(ctx, info.Volume)
	if err != nil {
		t.Fatalf("the volume on %s: %v", worker.Name, err)
	}
	if left, err := os.ReadDir(vol.Mountpoint); err != nil || len(left) != 0 {
		t.Errorf("the volume on %s after destroy: %d entries, %v", worker.Name, len(left), err)
	}
	inst := filters.NewArgs(filters.Arg("label", "paas.installation="+name))
	if svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: inst}); err != nil || len(svcs) != 0 {
		t.Errorf("services after destroy: %+v %v", svcs, err)
	}
	if secrets, err := cli.SecretList(ctx, swarm.SecretListOptions{Filters: inst}); err != nil || len(secrets) != 0 {
		t.Errorf("secrets after destroy: %+v %v", secrets, err)
	}

	// The name is free again: a new database of that name on the same
	// node starts empty, on a volume of its own.
	if out, err := run(ctx, t, p, admin, nil, "postgres:create", "shop", "--node", worker.Name); err != nil {
		t.Fatalf("create again: %v\n%s", err, out)
	}
	if got := connectLine(ctx, t, p, admin, "SELECT count(*) FROM pg_tables WHERE tablename = 'notes';\n"); got != "0" {
		t.Fatalf("the new database has the old table: %q", got)
	}
}

// run runs a plugin command as id and returns what it wrote to its output.
func run(ctx context.Context, t *testing.T, p *postgres.Postgres, id paas.Identity, stdin io.Reader, name string, args ...string) (string, error) {
	t.Helper()
	call := &plugins.Call{ID: id, Flags: map[string]string{}, Stdin: stdin}
	var cmd *plugins.Command
	for _, c := range p.Commands() {
		if c.Name == name {
			cmd = &c
		}
	}
	if cmd == nil {
		t.Fatalf("no command %s", name)
	}
	for i := 0; i < len(args); i++ {
		if takes, ok := cmd.Flags[args[i]]; ok {
			call.Flags[args[i]] = ""
			if takes && i+1 < len(args) {
				call.Flags[args[i]] = args[i+1]
				i++
			}
			continue
		}
		call.Args = append(call.Args, args[i])
	}
	var out, errOut bytes.Buffer
	call.Out, call.Err = &out, &errOut
	err := cmd.Run(ctx, call)
	if errOut.Len() > 0 {
		t.Logf("%s %s: stderr: %s", name, strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

// connectLine runs one query through postgres:connect and returns its one
// value.
func connectLine(ctx context.Context, t *testing.T, p *postgres.Postgres, id paas.Identity, query string) string {
	t.Helper()
	out, err := run(ctx, t, p, id, strings.NewReader(query), "postgres:connect", "shop")
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	// psql without -t prints a header, a rule, the value and a row count.
	if len(lines) == 4 && strings.HasPrefix(lines[1], "---") {
		return lines[2]
	}
	t.Fatalf("connect: output %q", out)
	return ""
}

// terminal is a session's input with a terminal, as paasd's SSH server
// hands it to a command that runs under ssh -t.
type terminal struct {
	io.Reader
	size [2]int
}

func (t *terminal) Terminal() (*paas.Terminal, bool) {
	resize := make(chan [2]int)
	close(resize)
	return &paas.Terminal{Term: "xterm", Width: t.size[0], Height: t.size[1], Resize: resize}, true
}

func drain(ctx context.Context, t *testing.T, cli *client.Client, node string, availability swarm.NodeAvailability) {
	t.Helper()
	n, _, err := cli.NodeInspectWithRaw(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Availability = availability
	if err := cli.NodeUpdate(ctx, n.ID, n.Version, n.Spec); err != nil {
		t.Fatalf("set %s %s: %v", node, availability, err)
	}
}

func nodeID(ctx context.Context, t *testing.T, cli *client.Client, hostname string) string {
	t.Helper()
	n, _, err := cli.NodeInspectWithRaw(ctx, hostname)
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func containers(ctx context.Context, t *testing.T, cli *client.Client, f filters.Args) []container.Summary {
	t.Helper()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
