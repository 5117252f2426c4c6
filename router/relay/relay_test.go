package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
	"paas/internal/registry"
	"paas/router/contract"
)

// fakeConfigs holds the relay address documents the Swarm would.
type fakeConfigs struct {
	mu   sync.Mutex
	cfgs []swarm.Config
}

func (f *fakeConfigs) ConfigList(context.Context, swarm.ConfigListOptions) ([]swarm.Config, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]swarm.Config(nil), f.cfgs...), nil
}

func (f *fakeConfigs) publish(t *testing.T, installation, addr string) {
	t.Helper()
	data, _ := json.Marshal(contract.ControlRelay{Addr: addr})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfgs = append(f.cfgs, swarm.Config{
		Meta: swarm.Meta{CreatedAt: time.Now()},
		Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Labels: contract.ConfigLabels(installation, contract.RoleControlRelay, "")}, Data: data},
	})
}

// relayCerts makes a CA with paasd's and the relay's certificates.
func relayCerts(t *testing.T) (server *tls.Config, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	srv, err := registry.LoadCertificates(dir, []string{contract.RelayServerName})
	if err != nil {
		t.Fatal(err)
	}
	cert, caPEM, err := registry.LoadClientCertificate(dir, "client", contract.RelayClientName)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: contract.RelayServerName}
	server = &tls.Config{Certificates: []tls.Certificate{srv.Server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	return server, client
}

// paasd is a TLS server that answers each connection with "NAME: " and what
// it read, once the relay closed its side.
func paasd(t *testing.T, cfg *tls.Config, name string) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				got, _ := io.ReadAll(c)
				io.WriteString(c, name+": "+string(got))
			}()
		}
	}()
	return ln
}

func serveRelay(t *testing.T, cfgs ConfigAPI, client *tls.Config) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), contract.ControlRelaySocket)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := New(Options{Installation: "inst", Configs: cfgs, TLS: client, CacheFor: time.Hour})
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

// exchange sends msg through the relay socket, ends its side and returns
// the answer.
func exchange(t *testing.T, sock, msg string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg)
	c.(*net.UnixConn).CloseWrite()
	got, _ := io.ReadAll(c)
	return string(got)
}

// The relay carries a connection's bytes both ways, unchanged, to the
// address paasd published; paasd moved (its old address gone), the next
// connection finds it at the new one, even with the old one still cached.
func TestRelay(t *testing.T) {
	server, client := relayCerts(t)
	cfgs := &fakeConfigs{}
	first := paasd(t, server, "first")
	cfgs.publish(t, "other", "127.0.0.1:1") // another installation's
	cfgs.publish(t, "inst", first.Addr().String())
	sock := serveRelay(t, cfgs, client)
	req := "GET /api/v1/whoami HTTP/1.1\r\nHost: paas.example.test\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
	if got := exchange(t, sock, req); got != "first: "+req {
		t.Fatalf("relayed: %q", got)
	}
	first.Close()
	second := paasd(t, server, "second")
	cfgs.publish(t, "inst", second.Addr().String())
	if got := exchange(t, sock, "hello"); got != "second: hello" {
		t.Fatalf("after paasd moved: %q", got)
	}
}

// Nothing published, or paasd's certificate not signed by the relay's CA:
// the connection is closed without a byte.
func TestRelayRefuses(t *testing.T) {
	_, client := relayCerts(t)
	if got := exchange(t, serveRelay(t, &fakeConfigs{}, client), "hello"); got != "" {
		t.Errorf("no address published: %q", got)
	}
	impostor, _ := relayCerts(t) // another CA's paasd
	cfgs := &fakeConfigs{}
	cfgs.publish(t, "inst", paasd(t, impostor, "impostor").Addr().String())
	if got := exchange(t, serveRelay(t, cfgs, client), "hello"); got != "" {
		t.Errorf("a server of another CA: %q", got)
	}
}

func TestLookup(t *testing.T) {
	cfgs := &fakeConfigs{}
	if _, err := Lookup(context.Background(), cfgs, "inst"); err != ErrNoAddress {
		t.Fatalf("nothing published: %v", err)
	}
	cfgs.publish(t, "inst", "10.0.0.5:7443")
	cfgs.cfgs = append(cfgs.cfgs, swarm.Config{Spec: swarm.ConfigSpec{ // an older, bad one
		Annotations: swarm.Annotations{Labels: map[string]string{paas.LabelInstallation: "inst", paas.LabelRole: contract.RoleControlRelay}},
		Data:        []byte("{"),
	}})
	addr, err := Lookup(context.Background(), cfgs, "inst")
	if err != nil || addr != "10.0.0.5:7443" {
		t.Fatalf("Lookup: %q, %v", addr, err)
	}
	cfgs.publish(t, "inst", "not an address")
	if _, err := Lookup(context.Background(), cfgs, "inst"); err == nil || !strings.Contains(err.Error(), "not an address") {
		t.Fatalf("a bad address: %v", err)
	}
}
