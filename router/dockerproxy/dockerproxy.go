// Package dockerproxy serves the router a read-only view of the Docker API:
// the few reads it makes to learn its routes, nothing else. The router faces
// the internet; with the Docker socket itself, a flaw in it would be root on
// the node. Behind this proxy it can list one installation's services,
// tasks and configs (without the services' environment, where apps keep
// their secrets), follow the event stream of services, nodes, configs and
// the installation's containers (each event cut down to its type, action
// and object ID), and ping the daemon; every other request is refused with
// 403 before it reaches Docker.
package dockerproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// maxListBody bounds a list answer the proxy rewrites.
const maxListBody = 64 << 20

// Proxy is the filtering proxy; it is an http.Handler.
type Proxy struct {
	label string // paas.installation=NAME, required in every list's filters
	rp    *httputil.ReverseProxy
	log   *slog.Logger
}

// New returns a proxy to the Docker API on the unix socket upstream that
// lets through the reads of the installation's router. installLabel is the
// label filter every list must carry, e.g. "paas.installation=NAME".
func New(upstream, installLabel string, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{label: installLabel, log: log.With("component", "docker-proxy")}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			ep := r.In.Context().Value(endpointKey{}).(endpoint)
			r.Out.URL = &url.URL{Scheme: "http", Host: "docker", Path: ep.path, RawQuery: r.In.URL.RawQuery}
			r.Out.Host = "docker"
			// Only what a read needs goes on: no credentials, no
			// upgrade, nothing the daemon could act on.
			h := http.Header{}
			for _, k := range []string{"User-Agent", "Accept"} {
				if v := r.In.Header.Get(k); v != "" {
					h.Set(k, v)
				}
			}
			r.Out.Header = h
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", upstream)
			},
			ResponseHeaderTimeout: 30 * time.Second,
			MaxIdleConns:          8,
			IdleConnTimeout:       time.Minute,
		},
		ModifyResponse: p.redact,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			p.log.Warn("docker API unreachable", "err", err)
			http.Error(w, "docker API unreachable", http.StatusBadGateway)
		},
	}
	return p
}

// The reads the router makes (router/docker.go, router/routeconfig.go, and
// the client's version negotiation), with or without a /vX.Y prefix.
const (
	epPing     = "/_ping"
	epVersion  = "/version"
	epServices = "/services"
	epTasks    = "/tasks"
	epConfigs  = "/configs"
	epEvents   = "/events"
)

// eventTypes are the event types the router follows (router/watch.go).
var eventTypes = []string{"service", "node", "config", "container"}

var sinceValue = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,9})?$`)

var versioned = regexp.MustCompile(`^/v[0-9]{1,2}\.[0-9]{1,3}(/[a-z_]+)$`)

type endpoint struct {
	path string // as requested, clean
	name string // without the version prefix
}

type endpointKey struct{}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ep, why := p.allowed(r)
	if why != "" {
		p.log.Warn("refused a Docker API request", "method", r.Method, "uri", r.RequestURI, "reason", why)
		http.Error(w, "403 Forbidden: "+why, http.StatusForbidden)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointKey{}, ep)))
}

// allowed checks r against the allowlist; it returns why not, or "".
func (p *Proxy) allowed(r *http.Request) (endpoint, string) {
	// The path as sent, before any decoding: an escaped or uncleaned
	// path could mean something else to the daemon than it does here.
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw[0] != '/' || strings.ContainsAny(raw, "%\\") || path.Clean(raw) != raw || raw != r.URL.Path {
		return endpoint{}, "path not allowed"
	}
	name := raw
	if m := versioned.FindStringSubmatch(raw); m != nil {
		name = m[1]
	}
	switch {
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0:
		return endpoint{}, "a request body is not allowed"
	case r.Header.Get("Upgrade") != "":
		return endpoint{}, "upgrades are not allowed"
	case name == epPing && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return endpoint{raw, name}, noQuery(r)
	case r.Method != http.MethodGet:
		return endpoint{}, "method not allowed"
	case name == epVersion:
		return endpoint{raw, name}, noQuery(r)
	case name == epServices || name == epTasks || name == epConfigs:
		return endpoint{raw, name}, p.checkFilters(r)
	case name == epEvents:
		return endpoint{raw, name}, p.checkEvents(r)
	}
	return endpoint{}, "endpoint not allowed"
}

func noQuery(r *http.Request) string {
	if r.URL.RawQuery != "" {
		return "query not allowed"
	}
	return ""
}

// checkFilters requires a list to ask for the installation's objects only:
// one filters parameter and nothing else, with the installation label among
// its label filters (label filters are all required to match).
func (p *Proxy) checkFilters(r *http.Request) string {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "malformed query"
	}
	if len(q) != 1 || len(q["filters"]) != 1 {
		return "exactly one filters parameter is required"
	}
	args, err := filters.FromJSON(q["filters"][0])
	if err != nil {
		return "malformed filters"
	}
	if !slices.Contains(args.Get("label"), p.label) {
		return "lists must filter on label " + p.label
	}
	return ""
}

// checkEvents requires an event stream to ask for the types the router
// follows, by a filters parameter of type, event and label filters, and
// optionally since (a Unix time). Container events must be of the
// installation's containers alone: their label filter is required.
func (p *Proxy) checkEvents(r *http.Request) string {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "malformed query"
	}
	if len(q["filters"]) != 1 || len(q["since"]) > 1 || len(q) != 1+len(q["since"]) {
		return "one filters parameter and at most one since parameter are required"
	}
	if since := q.Get("since"); len(q["since"]) == 1 && !sinceValue.MatchString(since) {
		return "since must be a Unix time"
	}
	args, err := filters.FromJSON(q["filters"][0])
	if err != nil {
		return "malformed filters"
	}
	if err := args.Validate(map[string]bool{"type": true, "event": true, "label": true}); err != nil {
		return "only type, event and label filters are allowed"
	}
	types := args.Get("type")
	if len(types) == 0 {
		return "a type filter is required"
	}
	for _, t := range types {
		if !slices.Contains(eventTypes, t) {
			return "event type " + t + " not allowed"
		}
	}
	if slices.Contains(types, "container") && (len(types) != 1 || !slices.Contains(args.Get("label"), p.label)) {
		return "container events must be asked for alone, filtered on label " + p.label
	}
	return ""
}

// redact removes the environment of every container spec from service and
// task lists: the router needs labels, ports and addresses, never an app's
// configuration.
func (p *Proxy) redact(resp *http.Response) error {
	ep, _ := resp.Request.Context().Value(endpointKey{}).(endpoint)
	if resp.StatusCode == http.StatusOK && ep.name == epEvents {
		resp.Body = slimEvents(resp.Body)
		resp.ContentLength = -1 // a stream: the proxy flushes every write
		resp.Header.Del("Content-Length")
		resp.Header.Del("Content-Encoding")
		return nil
	}
	if resp.StatusCode != http.StatusOK || ep.name != epServices && ep.name != epTasks {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBody+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", ep.name, err)
	}
	if len(body) > maxListBody {
		return fmt.Errorf("read %s: answer larger than %d bytes", ep.name, maxListBody)
	}
	out, err := Redact(body)
	if err != nil {
		return fmt.Errorf("redact %s: %w", ep.name, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(out))
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", fmt.Sprint(len(out)))
	resp.Header.Del("Content-Encoding")
	return nil
}

// Redact returns the JSON document body without the Env of any
// ContainerSpec in it.
func Redact(body []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber() // numbers pass through as they were
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	dropEnv(v)
	return json.Marshal(v)
}

func dropEnv(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			if k == "ContainerSpec" {
				if cs, ok := sub.(map[string]any); ok {
					delete(cs, "Env")
				}
			}
			dropEnv(sub)
		}
	case []any:
		for _, sub := range t {
			dropEnv(sub)
		}
	}
}

// slimEvents passes on a stream of events with only what the router reads
// of each: type, action, scope, time and the object's ID, and of a
// container the Swarm service and task it runs. Names, images and labels
// (of other installations' services, too) stay behind.
func slimEvents(body io.ReadCloser) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer body.Close()
		d := json.NewDecoder(body)
		enc := json.NewEncoder(pw)
		for {
			var m events.Message
			if err := d.Decode(&m); err != nil {
				if err == io.EOF {
					err = nil
				}
				pw.CloseWithError(err)
				return
			}
			out := events.Message{Type: m.Type, Action: m.Action, Scope: m.Scope, Time: m.Time, TimeNano: m.TimeNano, Actor: events.Actor{ID: m.Actor.ID}}
			if m.Type == events.ContainerEventType {
				out.Actor.Attributes = map[string]string{}
				for _, k := range []string{"com.docker.swarm.service.id", "com.docker.swarm.task.id"} {
					if v, ok := m.Actor.Attributes[k]; ok {
						out.Actor.Attributes[k] = v
					}
				}
			}
			if err := enc.Encode(out); err != nil {
				return // the reader went away
			}
		}
	}()
	return pr
}
