package router

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// AdminHost is the Host header of requests to the router's control endpoint.
// The underscore makes it an invalid DNS name, so no app can ever be routed
// at it. Requests must carry "Authorization: Bearer TOKEN" with
// Options.AdminToken; without a token configured the endpoint does not exist.
//
// The control plane uses it to run a rollout without ever sending a request
// to a task that cannot take it:
//
//	POST /refresh  re-read the routes now; answers like GET /backends
//	GET  /backends every backend routed or still busy, with requests in flight
//	POST /check    probe one task from inside the app network (CheckRequest)
const AdminHost = "_router.paas"

// BackendStatus is one backend in GET /backends.
type BackendStatus struct {
	Addr     string `json:"addr"`
	App      string `json:"app,omitempty"` // empty for a backend that left the table
	Routed   bool   `json:"routed"`        // new requests may go to it
	Inflight int64  `json:"inflight"`      // requests sent and not yet answered in full
}

// Status is the answer of GET /backends and POST /refresh.
type Status struct {
	Generation uint64          `json:"generation"` // increases on every table swap
	Backends   []BackendStatus `json:"backends"`
}

// CheckRequest asks the router to send one GET to a task.
type CheckRequest struct {
	Addr    string `json:"addr"`           // host:port of the task
	Path    string `json:"path"`           // request path, "/" when empty
	Host    string `json:"host,omitempty"` // Host header
	Timeout int    `json:"timeout_ms"`     // per attempt; 5000 when zero
}

// CheckResult is the answer to a CheckRequest: a status and the start of the
// body, or the error that kept the task from answering.
type CheckResult struct {
	Status int    `json:"status,omitempty"`
	Body   string `json:"body,omitempty"` // at most maxCheckBody bytes
	Error  string `json:"error,omitempty"`
}

const maxCheckBody = 64 << 10

func (r *Router) isAdmin(req *http.Request) bool {
	return r.opts.AdminToken != "" && req.Host == AdminHost
}

// serveAdmin answers the control endpoint. A request without the right token
// gets the same 404 as an unknown host.
func (r *Router) serveAdmin(w http.ResponseWriter, req *http.Request) {
	const prefix = "Bearer "
	auth := req.Header.Get("Authorization")
	if len(auth) <= len(prefix) || auth[:len(prefix)] != prefix ||
		subtle.ConstantTimeCompare([]byte(auth[len(prefix):]), []byte(r.opts.AdminToken)) != 1 {
		writeError(w, http.StatusNotFound, "404 Not Found\n\nNo app is served at this address.\n")
		return
	}
	switch {
	case req.Method == http.MethodGet && req.URL.Path == "/backends":
		writeJSON(w, r.Status())
	case req.Method == http.MethodPost && req.URL.Path == "/refresh":
		// Asked to re-read, a source that follows events reads everything:
		// the caller just changed something whose event may not be here yet.
		if ws, ok := r.src.(WatchedSource); ok {
			ws.Invalidate()
		}
		if err := r.Refresh(req.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error()+"\n")
			return
		}
		writeJSON(w, r.Status())
	case req.Method == http.MethodPost && req.URL.Path == "/check":
		var c CheckRequest
		if err := json.NewDecoder(io.LimitReader(req.Body, 4096)).Decode(&c); err != nil {
			writeError(w, http.StatusBadRequest, "bad check request: "+err.Error()+"\n")
			return
		}
		writeJSON(w, Check(req.Context(), c))
	default:
		writeError(w, http.StatusNotFound, "404 Not Found\n")
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// Status reports the backends being routed and those that left the table
// with requests still in flight.
func (r *Router) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Generation: r.gen.Load(), Backends: []BackendStatus{}}
	apps := map[string]string{}
	for _, rt := range r.table.Load().src.Routes {
		for _, b := range rt.Backends {
			apps[b.Addr] = rt.App
		}
	}
	for addr, be := range r.pool {
		st.Backends = append(st.Backends, BackendStatus{Addr: addr, App: apps[addr], Routed: true, Inflight: be.inflight.Load()})
	}
	for addr, be := range r.retired {
		n := be.inflight.Load()
		if n <= 0 {
			delete(r.retired, addr)
			continue
		}
		st.Backends = append(st.Backends, BackendStatus{Addr: addr, Inflight: n})
	}
	slices.SortFunc(st.Backends, func(a, b BackendStatus) int { return strings.Compare(a.Addr, b.Addr) })
	return st
}

// Check sends one GET to c.Addr on a connection of its own and reports what
// came back.
func Check(ctx context.Context, c CheckRequest) CheckResult {
	timeout := time.Duration(c.Timeout) * time.Millisecond
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return CheckResult{Error: "bad address: " + err.Error()}
	}
	path := c.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+path, nil)
	if err != nil {
		return CheckResult{Error: err.Error()}
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	req.Header.Set("User-Agent", "paas-healthcheck")
	tr := &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: timeout}).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return CheckResult{Error: "no answer within " + timeout.String()}
		}
		return CheckResult{Error: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	res := CheckResult{Status: resp.StatusCode, Body: string(body)}
	if err != nil {
		res.Error = "read body: " + err.Error()
	}
	return res
}

// countBody wraps a response body so that the backend's in-flight count
// drops when the proxy is done with it. An upgraded connection (101) must
// stay an io.ReadWriteCloser for the proxy to pass it through.
func countBody(body io.ReadCloser, b *backend) io.ReadCloser {
	d := &done{b: b}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &countedConn{ReadWriteCloser: rwc, done: d}
	}
	return &countedBody{ReadCloser: body, done: d}
}

type done struct {
	once sync.Once
	b    *backend
}

func (d *done) finish() { d.once.Do(func() { d.b.inflight.Add(-1) }) }

type countedBody struct {
	io.ReadCloser
	done *done
}

func (c *countedBody) Close() error {
	err := c.ReadCloser.Close()
	c.done.finish()
	return err
}

type countedConn struct {
	io.ReadWriteCloser
	done *done
}

func (c *countedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.done.finish()
	return err
}

// Client talks to a router's control endpoint, e.g. at 127.0.0.1:80 from
// the host that publishes the router's port.
type Client struct {
	Addr  string // host:port of the router's HTTP port
	Token string
	HTTP  *http.Client // http.DefaultClient when nil
}

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return err
	}
	req.Host = AdminHost
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("router %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("router %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("router %s: %w", path, err)
	}
	return nil
}

// Refresh makes the router re-read its routes and returns its status.
func (c *Client) Refresh(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodPost, "/refresh", nil, &st)
	return st, err
}

// Status returns the router's backends as they are.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/backends", nil, &st)
	return st, err
}

// Check asks the router to probe a task.
func (c *Client) Check(ctx context.Context, req CheckRequest) (CheckResult, error) {
	var res CheckResult
	err := c.do(ctx, http.MethodPost, "/check", req, &res)
	return res, err
}
