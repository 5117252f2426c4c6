package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	Body   string `json:"body,omitempty"` // at most 64 KB
	Error  string `json:"error,omitempty"`
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
