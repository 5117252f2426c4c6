package clustertest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"paas/builder"
	"paas/builder/buildertest"
	"paas/internal/clustertest"
	"paas/internal/commands"
	"paas/internal/paas"
	"paas/internal/registry"
	"paas/internal/store"
	"paas/scheduler"
)

// TestJoin joins a new machine the way a user does: nodes:join-command on
// the manager, then `scripts/install.sh --join` with what it printed, run
// against the new machine's own dockerd and certs.d (a cluster node left out
// of the swarm, with no --insecure-registry). Before, the new node cannot
// pull from the installation's registry (TLS with paas's own CA, a login);
// after, it is a ready worker in nodes:list and a task pinned to it runs the
// registry's image. Each bad input on the way (a CA that does not match, an
// unreachable manager, a wrong or replaced token) is refused with exit 1 and
// changes nothing; so are draining the last manager, removing a node that
// runs tasks and naming a node that does not exist.
func TestJoin(t *testing.T) {
	buildertest.Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := clustertest.UpWith(t, 3, clustertest.Options{Unjoined: 1, TLSRegistry: true})
	manager, fresh := c.Nodes[0], c.Nodes[2]
	if fresh.Role != "none" || fresh.CertsDir == "/etc/docker/certs.d" || fresh.CertsDir == manager.CertsDir {
		t.Fatalf("node 3: %+v, want one out of the swarm with a certs.d of its own", fresh)
	}

	// The installation's registry as paasd embeds it: Distribution behind
	// TLS with a CA made here, and a login, on the host's address on the
	// cluster's bridge.
	dir := t.TempDir()
	certs, err := registry.LoadCertificates(filepath.Join(dir, "tls"), []string{c.HostAddr})
	if err != nil {
		t.Fatal(err)
	}
	login, err := registry.LoadLogin(filepath.Join(dir, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Dir: filepath.Join(dir, "storage"), HTPasswd: login.HTPasswd()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	l, err := net.Listen("tcp", net.JoinHostPort(c.HostAddr, "0"))
	if err != nil {
		t.Fatalf("listen on the host's cluster address: %v", err)
	}
	// (Its log would only show the new machine's refused handshake, expected.)
	srv := &http.Server{Handler: reg, TLSConfig: certs.TLSConfig(), ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	target := paas.ImageRegistry{Prefix: l.Addr().String() + "/" + c.Name, Username: login.User, Password: login.Password, CAFile: certs.CAFile()}
	// The swarm's nodes trust it: paasd writes the CA for its own node's
	// dockerd (--docker-certs-dir), install.sh --join did for the others.
	for _, n := range c.Nodes[:2] {
		if err := registry.WriteDockerCA(n.CertsDir, target.Host(), certs.CA); err != nil {
			t.Fatal(err)
		}
	}
	mcli := c.Client(t, manager.Name)
	ref, err := builder.BuildSelfImage(ctx, mcli, buildertest.GoBinary(t, "echo", echoSource), target.Repository("echo")+":1", []string{"serve"}, &target, nil)
	if err != nil {
		t.Fatalf("build and push on the manager: %v", err)
	}
	fcli := c.Client(t, fresh.Name)
	if err := pull(ctx, fcli, ref, target); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("pull on the new machine before it joined: %v, want a TLS verification error", err)
	}

	// The node commands as paasd wires them, against the manager's Docker.
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := commands.NewDispatcher(st, "test", commands.NodeCommands(scheduler.NewNodes(mcli, c.Name), noRestarts{t},
		commands.JoinRegistry{Host: target.Host(), CAFile: certs.CAFile()}))
	admin := paas.Identity{Name: "root", Admin: true}
	ssh := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := d.RunCommand(ctx, admin, args, strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errOut := ssh("nodes:join-command", "--format", "json")
	var info struct {
		Command     string `json:"command"`
		Token       string `json:"token"`
		ManagerAddr string `json:"manager_addr"`
		Registry    string `json:"registry"`
		RegistryCA  string `json:"registry_ca_sha256"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("nodes:join-command --format json: exit %d\n%s%s", code, out, errOut)
	}
	block, _ := pem.Decode(certs.CA)
	sum := sha256.Sum256(block.Bytes)
	if info.ManagerAddr != manager.Addr+":2377" || info.Registry != target.Host() || info.RegistryCA != hex.EncodeToString(sum[:]) {
		t.Fatalf("nodes:join-command: %+v, want manager %s:2377, registry %s, CA %x", info, manager.Addr, target.Host(), sum)
	}
	if code, text, _ := ssh("nodes:join-command"); code != 0 || text != info.Command+"\n" {
		t.Fatalf("nodes:join-command: exit %d, %q, want the JSON's command %q", code, text, info.Command)
	}
	words := strings.Fields(info.Command)
	if len(words) < 2 || words[0] != "scripts/install.sh" || words[1] != "--join" {
		t.Fatalf("nodes:join-command printed %q", info.Command)
	}
	joinArgs := words[1:]

	script, err := clustertest.Script()
	if err != nil {
		t.Fatal(err)
	}
	installSh := filepath.Join(filepath.Dir(script), "install.sh")
	caPath := filepath.Join(fresh.CertsDir, target.Host(), "ca.crt")
	install := func(args ...string) (int, string) {
		cmd := exec.CommandContext(ctx, installSh, args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+fresh.DockerHost, "PAAS_DOCKER_CERTS_DIR="+fresh.CertsDir)
		start := time.Now()
		b, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		code := 0
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatalf("run install.sh: %v", err)
		}
		t.Logf("install.sh %s: exit %d after %.1fs\n%s", strings.Join(args[:1], " "), code, time.Since(start).Seconds(), b)
		return code, string(b)
	}
	unchanged := func(what string) {
		t.Helper()
		if state := swarmState(ctx, t, fcli); state != swarm.LocalNodeStateInactive {
			t.Fatalf("%s: the new machine's swarm state is %s, want inactive", what, state)
		}
		if _, err := os.Stat(caPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: %s exists (%v), want no CA installed", what, caPath, err)
		}
	}
	with := func(flag, value string) []string {
		args := append([]string(nil), joinArgs...)
		for i := range args {
			if args[i] == flag {
				args[i+1] = value
			}
		}
		return args
	}

	// Bad input: each refused, exit 1, nothing changed.
	other := sha256.Sum256([]byte("another CA"))
	otherCerts, err := registry.LoadCertificates(filepath.Join(dir, "other-tls"), []string{c.HostAddr})
	if err != nil {
		t.Fatal(err)
	}
	badSecret := info.Token[:strings.LastIndex(info.Token, "-")+1] + strings.Repeat("a", 25)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a CA that does not match", with("--registry-ca-sha256", hex.EncodeToString(other[:])), "presented no CA with SHA-256 " + hex.EncodeToString(other[:])},
		{"a CA file that is another CA", append(slices.Clone(joinArgs), "--registry-ca-file", otherCerts.CAFile()), "not the " + info.RegistryCA + " nodes:join-command printed"},
		{"an unreachable registry", with("--registry", c.HostAddr+":1"), "cannot reach the registry at " + c.HostAddr + ":1 over TLS"},
		{"an unreachable manager", with("--manager-addr", c.HostAddr+":1"), "cannot reach the manager at " + c.HostAddr + ":1"},
		{"a malformed token", with("--token", "SWMTKN-1-$(reboot)"), "not a Swarm join token"},
		{"a wrong token", with("--token", badSecret), "the swarm refused the join token"},
	} {
		code, out := install(tc.args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Fatalf("install.sh --join with %s: exit %d, want 1 and %q\n%s", tc.name, code, tc.want, out)
		}
		unchanged(tc.name)
	}
	// A used token that was replaced since (nodes:join-command --rotate):
	// the command printed before joins nothing more.
	code, rotated, errOut := ssh("nodes:join-command", "--rotate")
	if code != 0 || rotated == info.Command+"\n" || !strings.Contains(errOut, "join nothing more") {
		t.Fatalf("nodes:join-command --rotate: exit %d, %q (before: %q)\n%s", code, rotated, info.Command, errOut)
	}
	if code, out := install(joinArgs...); code != 1 || !strings.Contains(out, "the swarm refused the join token") {
		t.Fatalf("install.sh --join with the token replaced since: exit %d\n%s", code, out)
	}
	unchanged("a replaced token")

	// The command as printed now joins.
	joinArgs = strings.Fields(rotated)[1:]
	if code, out := install(joinArgs...); code != 0 || !strings.Contains(out, "Joined as a worker") {
		t.Fatalf("install.sh --join: exit %d\n%s", code, out)
	}
	if b, err := os.ReadFile(caPath); err != nil || string(b) != string(certs.CA) {
		t.Fatalf("%s: %q, %v; want the registry's CA", caPath, b, err)
	}
	if code, out := install(joinArgs...); code != 0 || !strings.Contains(out, "already in the swarm") {
		t.Fatalf("install.sh --join a second time: exit %d, want 0 and 'already in the swarm'\n%s", code, out)
	}

	// nodes:list shows it as a ready worker.
	var joined scheduler.Node
	deadline := time.Now().Add(60 * time.Second)
	for joined.State != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("the new machine is %+v in nodes:list after 60s, want a ready worker", joined)
		}
		time.Sleep(200 * time.Millisecond)
		code, out, errOut := ssh("nodes:list", "--format", "json")
		var list []scheduler.Node
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			t.Fatalf("nodes:list --format json: exit %d\n%s%s", code, out, errOut)
		}
		for _, n := range list {
			if n.Name == fresh.Name {
				joined = n
			}
		}
	}
	if joined.Role != "worker" || joined.Availability != "active" || joined.Addr != fresh.Addr {
		t.Fatalf("nodes:list: %+v, want an active worker at %s", joined, fresh.Addr)
	}

	// It pulls from the registry: by hand, and for a task Swarm places on it
	// with the registry's login, as paasd's services are made.
	if err := pull(ctx, fcli, ref, target); err != nil {
		t.Fatalf("pull on the joined machine: %v", err)
	}
	replicas := uint64(1)
	svc, err := mcli.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: c.Name + "-echo", Labels: map[string]string{paas.LabelInstallation: c.Name, paas.LabelApp: "echo"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: ref, Args: []string{"serve"}},
			Placement:     &swarm.Placement{Constraints: []string{"node.hostname==" + fresh.Name}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
	}, swarm.ServiceCreateOptions{EncodedRegistryAuth: builder.DockerAuth(target)})
	if err != nil {
		t.Fatalf("create a service on the new machine: %v", err)
	}
	waitRunning(ctx, t, mcli, svc.ID, 1, "", 60*time.Second)

	// Bad input on the live cluster: refused, exit 1, nothing changed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nodes:drain", manager.Name}, manager.Name + " is the last active manager"},
		{[]string{"nodes:remove", fresh.Name}, fresh.Name + " still runs tasks of echo"},
		{[]string{"nodes:drain", "no-such-node"}, "Node no-such-node does not exist"},
		{[]string{"nodes:activate", "no-such-node"}, "Node no-such-node does not exist"},
		{[]string{"nodes:remove", "no-such-node"}, "Node no-such-node does not exist"},
	} {
		before := nodeList(ctx, t, mcli)
		code, out, errOut := ssh(tc.args...)
		if code != commands.ExitError || !strings.Contains(errOut, tc.want) {
			t.Fatalf("%s: exit %d, want %d and %q\n%s%s", strings.Join(tc.args, " "), code, commands.ExitError, tc.want, out, errOut)
		}
		if after := nodeList(ctx, t, mcli); after != before {
			t.Fatalf("%s changed the nodes:\n%s\nwas\n%s", strings.Join(tc.args, " "), after, before)
		}
	}
}

// noRestarts is the Restarter of a test in which no app may be rolled out.
type noRestarts struct{ t *testing.T }

func (r noRestarts) Restart(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	r.t.Errorf("%s was rolled out: nothing should have moved", app)
	return errors.New("no rollout here")
}

// pull pulls ref onto cli's daemon with the registry's login, as Swarm does
// for a service created with it.
func pull(ctx context.Context, cli *client.Client, ref string, reg paas.ImageRegistry) error {
	rc, err := cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: builder.DockerAuth(reg)})
	if err != nil {
		return err
	}
	defer rc.Close()
	return jsonmessage.DisplayJSONMessagesStream(rc, io.Discard, 0, false, nil)
}

func swarmState(ctx context.Context, t *testing.T, cli *client.Client) swarm.LocalNodeState {
	t.Helper()
	info, err := cli.Info(ctx)
	if err != nil {
		t.Fatalf("docker info: %v", err)
	}
	return info.Swarm.LocalNodeState
}

// nodeList is every node's ID, role and availability, one a line.
func nodeList(ctx context.Context, t *testing.T, cli *client.Client) string {
	t.Helper()
	nodes, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	var lines []string
	for _, n := range nodes {
		lines = append(lines, fmt.Sprintf("%s %s %s %s", n.ID, n.Description.Hostname, n.Spec.Role, n.Spec.Availability))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
