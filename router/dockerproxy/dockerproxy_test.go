package dockerproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
)

// fakeDocker is the Docker API on a unix socket: it records what reaches it.
type fakeDocker struct {
	mu   sync.Mutex
	seen []string
	hdrs []http.Header
	hold time.Duration // how long an event stream stays open
}

const servicesJSON = `[{"ID":"s1","Version":{"Index":12345678901234},"Spec":{"Name":"x-app-web","Labels":{"paas.installation":"x"},` +
	`"TaskTemplate":{"ContainerSpec":{"Image":"img","Env":["DATABASE_URL=postgres://secret"],"Args":["/server"]}}},` +
	`"PreviousSpec":{"TaskTemplate":{"ContainerSpec":{"Env":["OLD=secret"]}}}}]`

const eventsJSON = `{"Type":"service","Action":"update","Actor":{"ID":"s1","Attributes":{"name":"other-db","image.new":"registry/secret-image:1"}},"scope":"swarm","time":1700000000,"timeNano":1700000000000000001}
{"Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"com.docker.swarm.service.id":"s1","com.docker.swarm.task.id":"t1","image":"img","name":"x-app-web.1","paas.app":"app"}},"scope":"local","time":1700000001,"timeNano":1700000001000000001}
`

func (f *fakeDocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.RequestURI())
	f.hdrs = append(f.hdrs, r.Header.Clone())
	f.mu.Unlock()
	w.Header().Set("Api-Version", "1.41")
	switch {
	case strings.HasSuffix(r.URL.Path, "/services"):
		io.WriteString(w, servicesJSON)
	case strings.HasSuffix(r.URL.Path, "/events"):
		// Two events at once, then the stream stays open (with hold) as
		// Docker's does.
		io.WriteString(w, eventsJSON)
		w.(http.Flusher).Flush()
		f.mu.Lock()
		hold := f.hold
		f.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(hold):
		}
	case strings.HasSuffix(r.URL.Path, "/tasks"):
		io.WriteString(w, `[{"ID":"t1","Spec":{"ContainerSpec":{"Env":["K=secret"]}},"NetworksAttachments":[{"Addresses":["10.0.1.5/24"]}]}]`)
	default:
		io.WriteString(w, "OK")
	}
}

func (f *fakeDocker) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// start serves a proxy of installation x in front of a fake Docker API and
// returns the proxy's socket.
func start(t *testing.T) (string, *fakeDocker) {
	t.Helper()
	dir := t.TempDir()
	upstream := filepath.Join(dir, "docker.sock")
	uln, err := net.Listen("unix", upstream)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeDocker{}
	usrv := &http.Server{Handler: fake}
	go usrv.Serve(uln)
	t.Cleanup(func() { usrv.Close() })

	sock := filepath.Join(dir, "proxy.sock")
	pln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	psrv := &http.Server{Handler: New(upstream, "paas.installation=x", nil)}
	go psrv.Serve(pln)
	t.Cleanup(func() { psrv.Close() })
	return sock, fake
}

// raw sends a request as written, byte for byte, so that paths no client
// library would send reach the proxy.
func raw(t *testing.T, sock, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
}

func filtersQuery(js string) string { return "filters=" + url.QueryEscape(js) }

func TestAllowed(t *testing.T) {
	sock, fake := start(t)
	own := filtersQuery(`{"label":{"paas.installation=x":true,"paas.process=web":true}}`)
	tests := []struct{ name, req, upstream string }{
		{"ping", get("/_ping"), "GET /_ping"},
		{"versioned ping", get("/v1.41/_ping"), "GET /v1.41/_ping"},
		{"ping head", "HEAD /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n", "HEAD /_ping"},
		{"version", get("/v1.41/version"), "GET /v1.41/version"},
		{"services", get("/v1.41/services?" + own), "GET /v1.41/services?" + own},
		{"tasks", get("/v1.41/tasks?" + filtersQuery(`{"desired-state":{"running":true},"label":{"paas.installation=x":true}}`)), ""},
		{"configs", get("/v1.41/configs?" + filtersQuery(`{"label":{"paas.installation=x":true}}`)), ""},
		{"legacy filters", get("/v1.24/services?" + filtersQuery(`{"label":["paas.installation=x"]}`)), ""},
		{"unversioned", get("/services?" + own), ""},
		{"swarm events", get("/v1.41/events?" + filtersQuery(`{"type":{"service":true,"node":true,"config":true}}`)), ""},
		{"swarm events since", get("/v1.41/events?since=1700000000.000000001&" + filtersQuery(`{"type":{"service":true}}`)), ""},
		{"container events", get("/v1.41/events?" + filtersQuery(`{"type":{"container":true},"label":{"paas.installation=x":true,"paas.process=web":true},"event":{"start":true,"die":true}}`)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fake.requests())
			resp, body := raw(t, sock, tt.req)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			got := fake.requests()
			if len(got) != before+1 {
				t.Fatalf("upstream saw %v", got[before:])
			}
			if tt.upstream != "" && got[before] != tt.upstream {
				t.Errorf("upstream got %q, want %q", got[before], tt.upstream)
			}
			if resp.Header.Get("Api-Version") != "1.41" {
				t.Errorf("Api-Version %q: the client's version negotiation needs it", resp.Header.Get("Api-Version"))
			}
		})
	}
}

func TestRefused(t *testing.T) {
	sock, fake := start(t)
	own := filtersQuery(`{"label":{"paas.installation=x":true}}`)
	tests := []struct{ name, req string }{
		{"create", "POST /v1.41/services/create HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"},
		{"delete", "DELETE /v1.41/services/abc HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"},
		{"put", "PUT /v1.41/services?" + own + " HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"},
		{"post ping", "POST /_ping HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"head list", "HEAD /v1.41/services?" + own + " HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"},
		{"containers", get("/v1.41/containers/json")},
		{"container archive", get("/v1.41/containers/abc/archive?path=/etc")},
		{"secrets", get("/v1.41/secrets?" + own)},
		{"service inspect", get("/v1.41/services/abc")},
		{"events", get("/v1.41/events")},
		{"events of every type", get("/v1.41/events?" + filtersQuery(`{"event":{"start":true}}`))},
		{"image events", get("/v1.41/events?" + filtersQuery(`{"type":{"image":true}}`))},
		{"container events of every installation", get("/v1.41/events?" + filtersQuery(`{"type":{"container":true}}`))},
		{"container events of another installation", get("/v1.41/events?" + filtersQuery(`{"type":{"container":true},"label":{"paas.installation=y":true}}`))},
		{"container and service events", get("/v1.41/events?" + filtersQuery(`{"type":{"container":true,"service":true},"label":{"paas.installation=x":true}}`))},
		{"events by container name", get("/v1.41/events?" + filtersQuery(`{"type":{"service":true},"container":{"abc":true}}`))},
		{"events until", get("/v1.41/events?until=1700000000&" + filtersQuery(`{"type":{"service":true}}`))},
		{"events since a date", get("/v1.41/events?since=2024-01-01&" + filtersQuery(`{"type":{"service":true}}`))},
		{"events posted", "POST /v1.41/events?" + filtersQuery(`{"type":{"service":true}}`) + " HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"info", get("/v1.41/info")},
		{"dot dot", get("/v1.41/containers/../services?" + own)},
		{"dot dot to containers", get("/v1.41/services/../containers/json")},
		{"dot", get("/v1.41/./services?" + own)},
		{"double slash", get("/v1.41//services?" + own)},
		{"trailing slash", get("/v1.41/services/?" + own)},
		{"encoded letter", get("/v1.41/%73ervices?" + own)},
		{"encoded slash", get("/v1.41/services%2F..%2Fcontainers%2Fjson")},
		{"encoded dot dot", get("/v1.41/containers/%2e%2e/services?" + own)},
		{"backslash", get("/v1.41\\services?" + own)},
		{"absolute form", get("http://docker/v1.41/services?" + own)},
		{"bad version", get("/vx/services?" + own)},
		{"no filters", get("/v1.41/services")},
		{"other installation", get("/v1.41/services?" + filtersQuery(`{"label":{"paas.installation=y":true}}`))},
		{"installation as a prefix", get("/v1.41/services?" + filtersQuery(`{"label":{"paas.installation=xy":true}}`))},
		{"installation in another key", get("/v1.41/services?" + filtersQuery(`{"name":{"paas.installation=x":true}}`))},
		{"two filters", get("/v1.41/services?" + own + "&" + filtersQuery(`{"label":{"paas.installation=y":true}}`))},
		{"extra parameter", get("/v1.41/services?" + own + "&status=true")},
		{"malformed filters", get("/v1.41/services?filters=%7Bnot%20json")},
		{"ping with query", get("/_ping?x=1")},
		{"body on a read", "GET /v1.41/services?" + own + " HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"},
		{"chunked body", "GET /v1.41/services?" + own + " HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"},
		{"upgrade", "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, sock, tt.req)
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%d %q, want 403", resp.StatusCode, body)
			}
		})
	}
	if got := fake.requests(); len(got) > 0 {
		t.Errorf("refused requests reached Docker: %v", got)
	}
}

// TestEventStream: events pass through as they come (the stream stays
// open), cut down to what the router reads.
func TestEventStream(t *testing.T) {
	sock, fake := start(t)
	fake.mu.Lock()
	fake.hold = 10 * time.Second
	fake.mu.Unlock()
	c := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://docker/v1.41/events?"+filtersQuery(`{"type":{"service":true}}`), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d := json.NewDecoder(resp.Body)
	var got []events.Message
	for range 2 { // before the upstream ends its stream, 10 s from now
		var m events.Message
		if err := d.Decode(&m); err != nil {
			t.Fatalf("read event %d: %v", len(got)+1, err)
		}
		got = append(got, m)
	}
	svc, ctr := got[0], got[1]
	if svc.Type != "service" || svc.Action != "update" || svc.Actor.ID != "s1" || svc.Scope != "swarm" || svc.TimeNano != 1700000000000000001 || len(svc.Actor.Attributes) != 0 {
		t.Errorf("service event = %+v, want type, action, ID, scope and time without attributes", svc)
	}
	want := map[string]string{"com.docker.swarm.service.id": "s1", "com.docker.swarm.task.id": "t1"}
	if ctr.Type != "container" || ctr.Action != "die" || ctr.Actor.ID != "c1" || !maps.Equal(ctr.Actor.Attributes, want) {
		t.Errorf("container event = %+v, want its service and task IDs only", ctr)
	}
}

func TestRedactsEnvironment(t *testing.T) {
	sock, fake := start(t)
	c := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	for _, ep := range []string{"services", "tasks"} {
		req, _ := http.NewRequest("GET", "http://docker/v1.41/"+ep+"?"+filtersQuery(`{"label":{"paas.installation=x":true}}`), nil)
		req.Header.Set("X-Registry-Auth", "c2VjcmV0")
		req.Header.Set("Authorization", "Bearer x")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != 200 || strings.Contains(body, "secret") || strings.Contains(body, `"Env"`) {
			t.Errorf("%s: %d %s", ep, resp.StatusCode, body)
		}
		if resp.ContentLength != int64(len(b)) {
			t.Errorf("%s: Content-Length %d for %d bytes", ep, resp.ContentLength, len(b))
		}
		if ep == "services" && (!strings.Contains(body, `"paas.installation":"x"`) || !strings.Contains(body, `"Index":12345678901234`) || !strings.Contains(body, `"Args":["/server"]`)) {
			t.Errorf("services lost what the router reads: %s", body)
		}
		if ep == "tasks" && !strings.Contains(body, "10.0.1.5/24") {
			t.Errorf("tasks lost their addresses: %s", body)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, h := range fake.hdrs {
		if h.Get("X-Registry-Auth") != "" || h.Get("Authorization") != "" {
			t.Errorf("credentials passed on: %v", h)
		}
	}
}
