package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"paas/router/contract"
	"paas/scheduler"
)

// fakeRouter answers the routers' control endpoints with fixed backends on
// its own loopback address (127.0.0.N), all on one port.
func fakeRouters(t *testing.T, backends ...[]contract.BackendStatus) (hosts []string, port int) {
	t.Helper()
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = l0.Addr().(*net.TCPAddr).Port
	for i, bs := range backends {
		l := l0
		if i > 0 {
			if l, err = net.Listen("tcp", net.JoinHostPort("127.0.0."+strconv.Itoa(i+1), strconv.Itoa(port))); err != nil {
				t.Fatalf("listen on a second loopback address, port %d: %v", port, err)
			}
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(contract.Status{Backends: bs})
		}))
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
		hosts = append(hosts, l.Addr().(*net.TCPAddr).IP.String())
	}
	return hosts, port
}

func TestTrafficMergesRouters(t *testing.T) {
	hosts, port := fakeRouters(t,
		[]contract.BackendStatus{{Addr: "10.0.0.1:5000", Routed: true, Inflight: 1}, {Addr: "10.0.0.2:5000", Routed: true}, {Addr: "10.0.0.3:5000", Routed: false, Inflight: 2}},
		[]contract.BackendStatus{{Addr: "10.0.0.1:5000", Routed: true, Inflight: 3}, {Addr: "10.0.0.3:5000", Routed: false}},
	)
	tr := &traffic{port: port, token: "tok", routers: func(context.Context) ([]string, error) { return hosts, nil }}
	for _, refresh := range []bool{false, true} {
		bs, err := tr.Backends(context.Background(), refresh)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]scheduler.Backend{}
		for _, b := range bs {
			got[b.Addr] = b
		}
		want := map[string]scheduler.Backend{
			"10.0.0.1:5000": {Addr: "10.0.0.1:5000", Routed: true, Routing: true, Inflight: 4},
			"10.0.0.2:5000": {Addr: "10.0.0.2:5000", Routed: false, Routing: true}, // the second router does not route it yet
			"10.0.0.3:5000": {Addr: "10.0.0.3:5000", Routed: false, Routing: false, Inflight: 2},
		}
		if len(got) != len(want) {
			t.Fatalf("backends %+v, want %+v", bs, want)
		}
		for a, w := range want {
			if got[a] != w {
				t.Fatalf("%s: %+v, want %+v", a, got[a], w)
			}
		}
	}
	if err := tr.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad := &traffic{port: port, token: "wrong", routers: tr.routers}
	if _, err := bad.Backends(context.Background(), false); err == nil {
		t.Fatal("a router that refuses the token reads as no error")
	}
	none := &traffic{port: port, token: "tok", routers: func(context.Context) ([]string, error) { return nil, nil }}
	if err := none.Refresh(context.Background()); err == nil {
		t.Fatal("no router reads as no error")
	}
}
