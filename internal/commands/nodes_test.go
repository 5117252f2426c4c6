package commands

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/scheduler"
)

// fakeNodes is a Swarm of named nodes; it records availability changes,
// restarts and removals in order.
type fakeNodes struct {
	nodes   []scheduler.Node
	log     []string
	fail    map[string]error // app -> Restart error
	manager string           // the manager's address ("": 10.9.8.1:2377)
}

func (f *fakeNodes) List(context.Context) ([]scheduler.Node, error) { return f.nodes, nil }

func (f *fakeNodes) Find(_ context.Context, name string) (scheduler.Node, error) {
	for _, n := range f.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return scheduler.Node{}, scheduler.ErrNodeNotFound
}

func (f *fakeNodes) SetAvailability(_ context.Context, id, a string) error {
	f.log = append(f.log, id+"="+a)
	return nil
}

func (f *fakeNodes) Remove(_ context.Context, n scheduler.Node) error {
	f.log = append(f.log, "remove "+n.ID)
	return nil
}

func (f *fakeNodes) JoinToken(_ context.Context, manager, rotate bool) (string, string, error) {
	if rotate {
		f.log = append(f.log, fmt.Sprintf("rotate manager=%v", manager))
	}
	addr := "10.9.8.1:2377"
	if f.manager != "" {
		addr = f.manager
	}
	return fmt.Sprintf("TOKEN-manager=%v", manager), addr, nil
}

func (f *fakeNodes) Restart(_ context.Context, app string, _ paas.Identity, _ io.Writer) error {
	f.log = append(f.log, "restart "+app)
	return f.fail[app]
}

// testCA is a CA certificate (PEM) and the SHA-256 of its DER, as
// `openssl x509 -outform DER | sha256sum` prints it.
func testCA(t *testing.T) (path, sha string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return path, hex.EncodeToString(sum[:])
}

func TestNodeCommands(t *testing.T) {
	caFile, caSHA := testCA(t)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := JoinRegistry{Host: "10.9.8.1:5000", CAFile: caFile}
	swarmOf := func() *fakeNodes {
		return &fakeNodes{nodes: []scheduler.Node{
			{ID: "m1", Name: "manager1", Role: "manager", State: "ready", Availability: "active", Tasks: map[string]int{"(paas)": 1}},
			{ID: "m2", Name: "manager2", Role: "manager", State: "down", Availability: "active", Tasks: map[string]int{}},
			{ID: "m3", Name: "manager3", Role: "manager", State: "ready", Availability: "drain", Tasks: map[string]int{}},
			{ID: "w1", Name: "worker1", Role: "worker", State: "ready", Availability: "active", Tasks: map[string]int{"bravo": 2, "alpha": 1, "(paas)": 1}},
			{ID: "w2", Name: "worker2", Role: "worker", State: "down", Availability: "active", Tasks: map[string]int{}},
		}}
	}
	tests := []struct {
		name     string
		id       paas.Identity
		args     []string
		registry *JoinRegistry
		manager  string // the manager's address, when not 10.9.8.1:2377
		fail     map[string]error
		wantCode int
		wantOut  string
		wantErr  string
		wantLog  string
	}{
		{name: "list", id: alice, args: []string{"nodes:list"}, wantOut: "worker1"},
		{name: "list json", id: alice, args: []string{"nodes:list", "--format", "json"}, wantOut: `"availability":"active"`},
		{name: "join command", id: root, args: []string{"nodes:join-command"},
			wantOut: "scripts/install.sh --join --token TOKEN-manager=false --manager-addr 10.9.8.1:2377 --registry 10.9.8.1:5000 --registry-ca-sha256 " + caSHA + "\n"},
		{name: "join command for a manager", id: root, args: []string{"nodes:join-command", "--manager"},
			wantOut: "--token TOKEN-manager=true --manager-addr 10.9.8.1:2377 --registry 10.9.8.1:5000 --registry-ca-sha256 " + caSHA + "\n"},
		{name: "join command json", id: root, args: []string{"nodes:join-command", "--format", "json"},
			wantOut: `{"command":"scripts/install.sh --join --token TOKEN-manager=false --manager-addr 10.9.8.1:2377 --registry 10.9.8.1:5000 --registry-ca-sha256 ` + caSHA +
				`","role":"worker","token":"TOKEN-manager=false","manager_addr":"10.9.8.1:2377","registry":"10.9.8.1:5000","registry_ca_sha256":"` + caSHA + `"}`},
		{name: "join command rotates the token", id: root, args: []string{"nodes:join-command", "--rotate"},
			wantOut: "--token TOKEN-manager=false", wantErr: "commands printed before join nothing more", wantLog: "rotate manager=false"},
		{name: "join command for a registry with a public certificate", id: root, args: []string{"nodes:join-command"}, registry: &JoinRegistry{Host: "ghcr.io"},
			wantOut: "scripts/install.sh --join --token TOKEN-manager=false --manager-addr 10.9.8.1:2377\n"},
		{name: "join command with an unreadable CA rotates nothing", id: root, args: []string{"nodes:join-command", "--rotate"}, registry: &JoinRegistry{Host: "r:5000", CAFile: notPEM},
			wantCode: ExitError, wantErr: "holds no PEM certificate"},
		{name: "join command with a registry on loopback", id: root, args: []string{"nodes:join-command"}, registry: &JoinRegistry{Host: "127.0.0.1:5000", CAFile: caFile},
			wantCode: ExitError, wantErr: "the registry is at 127.0.0.1:5000, which no other machine reaches"},
		{name: "join command of a swarm on loopback rotates nothing", id: root, args: []string{"nodes:join-command", "--rotate"}, manager: "127.0.0.1:2377",
			wantCode: ExitError, wantErr: "the swarm's manager advertises 127.0.0.1:2377"},
		{name: "join command with a bad format", id: root, args: []string{"nodes:join-command", "--format", "yaml"}, wantCode: ExitError, wantErr: "yaml"},
		{name: "join command is for admins", id: alice, args: []string{"nodes:join-command"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "drain moves each app, then drains", id: root, args: []string{"nodes:drain", "worker1"},
			wantOut: "worker1 drained", wantLog: "w1=pause,restart alpha,restart bravo,w1=drain"},
		{name: "drain stops paused when an app cannot move", id: root, args: []string{"nodes:drain", "worker1"}, fail: map[string]error{"alpha": errBoom},
			wantCode: ExitError, wantErr: "worker1 is paused, not drained: alpha could not be moved", wantLog: "w1=pause,restart alpha,restart bravo"},
		// manager2 is down and manager3 drained: neither runs a router.
		{name: "drain of the last ready manager is refused", id: root, args: []string{"nodes:drain", "manager1"}, wantCode: ExitError, wantErr: "manager1 is the last active manager"},
		{name: "drain of an unknown node", id: root, args: []string{"nodes:drain", "nope"}, wantCode: ExitError, wantErr: "Node nope does not exist"},
		{name: "drain is for admins", id: bob, args: []string{"nodes:drain", "worker1"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "activate", id: root, args: []string{"nodes:activate", "worker1"}, wantOut: "worker1 is active", wantLog: "w1=active"},
		{name: "activate of an unknown node", id: root, args: []string{"nodes:activate", "nope"}, wantCode: ExitError, wantErr: "Node nope does not exist"},
		{name: "activate is for admins", id: alice, args: []string{"nodes:activate", "worker1"}, wantCode: ExitError, wantErr: "administrators only"},
		{name: "remove", id: root, args: []string{"nodes:remove", "worker2"}, wantOut: "Removed worker2", wantLog: "remove w2"},
		{name: "remove of an unknown node", id: root, args: []string{"nodes:remove", "nope"}, wantCode: ExitError, wantErr: "Node nope does not exist"},
		{name: "remove of a name with control characters", id: root, args: []string{"nodes:remove", "no\x1b[2Jpe"}, wantCode: ExitError, wantErr: "holds a control character"},
		{name: "remove needs a node name", id: root, args: []string{"nodes:remove"}, wantCode: ExitError, wantErr: "missing arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := swarmOf()
			f.fail = tc.fail
			f.manager = tc.manager
			r := reg
			if tc.registry != nil {
				r = *tc.registry
			}
			d := NewDispatcher(newFakeStore(), "1", NodeCommands(f, f, r))
			var out, errb strings.Builder
			code := d.RunCommand(context.Background(), tc.id, tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errb.String())
			}
			if strings.ContainsRune(errb.String(), 0x1b) {
				t.Fatalf("stderr holds an escape character: %q", errb.String())
			}
			if got := strings.Join(f.log, ","); got != tc.wantLog {
				t.Fatalf("actions %q, want %q", got, tc.wantLog)
			}
		})
	}
}

func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{
		"SWMTKN-1-abc-def": "SWMTKN-1-abc-def",
		"10.0.0.5:2377":    "10.0.0.5:2377",
		"[fd00::1]:2377":   "'[fd00::1]:2377'",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"$(reboot)":        "'$(reboot)'",
		"":                 "''",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %s, want %s", in, got, want)
		}
	}
}
