package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/registry"
	"paas/internal/web"
	"paas/router/contract"
)

// paasd's relay listener serves the web server to the relay's certificate
// only, and believes the X-Forwarded-For of those connections alone: no
// certificate, another CA's, or another certificate of the relay's own CA
// gets no answer.
func TestRelayListener(t *testing.T) {
	dataDir := t.TempDir()
	cfg := Config{ControlAddr: "127.0.0.1:0"}
	rl, err := listenRelay(context.Background(), cfg, dataDir, nil, slog.Default())
	if err != nil || rl == nil {
		t.Fatalf("listenRelay: %v, %v", rl, err)
	}
	if !strings.HasPrefix(rl.addr, "127.0.0.1:") || strings.HasSuffix(rl.addr, ":0") {
		t.Fatalf("advertised address %q", rl.addr)
	}
	srv := web.New(web.Options{
		Mounts:  []web.Mount{{Prefix: "/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })}},
		Relayed: contract.IsRelayClient,
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, rl.ln, time.Second) }()
	t.Cleanup(func() { cancel(); <-served })

	bundle, err := contract.ParseRelayBundle([]byte(rl.bundle))
	if err != nil {
		t.Fatal(err)
	}
	relayTLS, err := bundle.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	get := func(cfg *tls.Config) (string, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest("GET", "https://"+rl.addr+"/", nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get(relayTLS); err != nil || got != "203.0.113.7" {
		t.Fatalf("the relay: %q, %v; want the forwarded address", got, err)
	}

	noCert := relayTLS.Clone()
	noCert.Certificates = nil
	// The relay's CA, another name: a certificate paasd might sign for
	// something else.
	other, _, err := registry.LoadClientCertificate(filepath.Join(dataDir, RelayTLSDir), "other", "someone else")
	if err != nil {
		t.Fatal(err)
	}
	otherName := relayTLS.Clone()
	otherName.Certificates = []tls.Certificate{other}
	// Another CA, the relay's name.
	foreign, _, err := registry.LoadClientCertificate(t.TempDir(), "client", contract.RelayClientName)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := relayTLS.Clone()
	otherCA.Certificates = []tls.Certificate{foreign}
	for name, cfg := range map[string]*tls.Config{"no certificate": noCert, "another name": otherName, "another CA": otherCA} {
		if got, err := get(cfg); err == nil {
			t.Errorf("%s: answered %q", name, got)
		}
	}
	// Plain HTTP gets no page either.
	c, err := net.Dial("tcp", rl.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
	if b, _ := io.ReadAll(c); strings.Contains(string(b), "203.0.113.7") || strings.Contains(string(b), "200 OK") {
		t.Errorf("plain HTTP answered: %q", b)
	}
}

// A request from another client of the same server (not the relay) keeps
// its own address: only the relay's X-Forwarded-For is believed.
func TestRelayedOnly(t *testing.T) {
	dir := t.TempDir()
	srvCerts, err := registry.LoadCertificates(dir, []string{contract.RelayServerName})
	if err != nil {
		t.Fatal(err)
	}
	cert, caPEM, err := registry.LoadClientCertificate(dir, "other", "someone else")
	if err != nil {
		t.Fatal(err)
	}
	// A server that accepts any certificate of the CA: only Relayed keeps
	// the header out.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCerts.Server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(web.Options{
		Mounts:  []web.Mount{{Prefix: "/", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })}},
		Relayed: contract.IsRelayClient,
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() { cancel(); <-served })
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: contract.RelayServerName,
	}}}
	req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(b), "127.0.0.1:") {
		t.Fatalf("RemoteAddr %q, want the connection's own", b)
	}
}

func TestListenRelayAddresses(t *testing.T) {
	nodeAddr := func(context.Context) (string, error) { return "127.0.0.1", nil }
	for _, tt := range []struct {
		name, addr string
		want       string // prefix of the advertised address; "" for no listener
	}{
		{"off", ControlAddrOff, ""},
		{"a given address", "127.0.0.1:0", "127.0.0.1:"},
		{"any address: the node's Swarm address advertised", "0.0.0.0:0", "127.0.0.1:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rl, err := listenRelay(context.Background(), Config{ControlAddr: tt.addr}, t.TempDir(), nodeAddr, slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if rl != nil {
					t.Fatalf("listening at %s", rl.addr)
				}
				return
			}
			defer rl.ln.Close()
			if !strings.HasPrefix(rl.addr, tt.want) || strings.HasSuffix(rl.addr, ":0") {
				t.Fatalf("advertised %q, want %s and the bound port", rl.addr, tt.want)
			}
		})
	}
	// The operator's address taken: an error; the default's: no relay.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := listenRelay(context.Background(), Config{ControlAddr: taken.Addr().String()}, t.TempDir(), nodeAddr, slog.Default()); err == nil {
		t.Error("an address in use: no error")
	}
	if err := validControlAddr("nonsense"); err == nil || !strings.Contains(err.Error(), "--control-addr") {
		t.Errorf("Validate of a bad --control-addr: %v", err)
	}
}

type fakeRelayConfigs struct {
	cfgs    []swarm.Config
	created []string
	removed []string
}

func (f *fakeRelayConfigs) ConfigList(context.Context, swarm.ConfigListOptions) ([]swarm.Config, error) {
	return f.cfgs, nil
}

func (f *fakeRelayConfigs) ConfigCreate(_ context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	f.created = append(f.created, string(spec.Data))
	f.cfgs = append(f.cfgs, swarm.Config{ID: fmt.Sprint(len(f.cfgs)), Spec: spec})
	return swarm.ConfigCreateResponse{}, nil
}

func (f *fakeRelayConfigs) ConfigRemove(_ context.Context, id string) error {
	f.removed = append(f.removed, id)
	return nil
}

// A new address replaces the old one; the same one again changes nothing.
func TestPublishRelay(t *testing.T) {
	f := &fakeRelayConfigs{}
	if err := publishRelay(context.Background(), f, "inst", "10.0.0.5:7443"); err != nil {
		t.Fatal(err)
	}
	if err := publishRelay(context.Background(), f, "inst", "10.0.0.5:7443"); err != nil {
		t.Fatal(err)
	}
	if err := publishRelay(context.Background(), f, "inst", "10.0.0.6:7443"); err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"addr":"10.0.0.5:7443"}`, `{"addr":"10.0.0.6:7443"}`}; fmt.Sprint(f.created) != fmt.Sprint(want) || fmt.Sprint(f.removed) != "[0]" {
		t.Fatalf("created %v, removed %v", f.created, f.removed)
	}
}
