package router

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"paas/router/contract"
	"paas/router/engine"
)

const maxCheckBody = 64 << 10

func (r *Router) isAdmin(req *http.Request) bool {
	return r.opts.AdminToken != "" && req.Host == contract.AdminHost
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
		var c contract.CheckRequest
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
func (r *Router) Status() contract.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := contract.Status{Generation: r.gen.Load(), Backends: []contract.BackendStatus{}}
	apps := map[string]string{}
	for _, rt := range r.table.Load().src.Routes {
		for _, b := range rt.Backends {
			apps[b.Addr] = rt.App
		}
	}
	for addr, be := range r.pool {
		st.Backends = append(st.Backends, contract.BackendStatus{Addr: addr, App: apps[addr], Routed: true, Inflight: be.InFlight()})
	}
	for addr, be := range r.retired {
		n := be.InFlight()
		if n <= 0 {
			delete(r.retired, addr)
			continue
		}
		st.Backends = append(st.Backends, contract.BackendStatus{Addr: addr, Inflight: n})
	}
	slices.SortFunc(st.Backends, func(a, b contract.BackendStatus) int { return strings.Compare(a.Addr, b.Addr) })
	return st
}

// Check sends one GET to c.Addr on a connection of its own and reports what
// came back.
func Check(ctx context.Context, c contract.CheckRequest) contract.CheckResult {
	timeout := time.Duration(c.Timeout) * time.Millisecond
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return contract.CheckResult{Error: "bad address: " + err.Error()}
	}
	path := c.Path
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr+path, nil)
	if err != nil {
		return contract.CheckResult{Error: err.Error()}
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
			return contract.CheckResult{Error: "no answer within " + timeout.String()}
		}
		return contract.CheckResult{Error: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody))
	res := contract.CheckResult{Status: resp.StatusCode, Body: string(body)}
	if err != nil {
		res.Error = "read body: " + err.Error()
	}
	return res
}

// countBody wraps a response body so that the backend's in-flight count
// drops when the proxy is done with it. An upgraded connection (101) must
// stay an io.ReadWriteCloser for the proxy to pass it through.
func countBody(body io.ReadCloser, b *engine.Backend) io.ReadCloser {
	d := &done{b: b}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &countedConn{ReadWriteCloser: rwc, done: d}
	}
	return &countedBody{ReadCloser: body, done: d}
}

type done struct {
	once sync.Once
	b    *engine.Backend
}

func (d *done) finish() { d.once.Do(func() { d.b.End() }) }

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
