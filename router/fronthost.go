package router

import (
	"bytes"
	"context"
	"time"

	"paas/router/contract"
	"paas/router/engine"
)

// frontHost is the router as the engine's front sees it (engine.Host): the
// route of a request it read, or nil for what the router answers through
// net/http.
type frontHost struct{ r *Router }

var _ engine.Host = frontHost{}

// Route returns the route the front proxies a request on, or nil when
// net/http is to serve it: the admin endpoint, an unknown host (404), an app
// without tasks (503), a control plane name (a route with no backend), an
// ACME challenge, or the redirect to HTTPS of a host with a certificate.
func (h frontHost) Route(host, target []byte, tls bool) *engine.Route {
	r := h.r
	if r.opts.AdminToken != "" && string(host) == contract.AdminHost {
		return nil
	}
	tbl := r.table.Load()
	rt := tbl.lookupBytes(host)
	if rt == nil || len(rt.Backends) == 0 {
		return nil
	}
	if !tls {
		if tbl.global != nil && bytes.HasPrefix(target, []byte(contract.ACMEChallengePath)) {
			return nil
		}
		if rt.edge != nil && len(rt.edge.Certs) > 0 && r.opts.HTTPSAddr != "" && rt.cert(canonicalHost(string(host)), time.Now()) != nil {
			return nil // the redirect to HTTPS
		}
	}
	return &rt.Route
}

// Draining reports that the router answers with Connection: close.
func (h frontHost) Draining() bool { return h.r.draining.Load() }

// LogRequest writes a request's access log line.
func (h frontHost) LogRequest(ctx context.Context, l engine.RequestLog) { h.r.logRequest(ctx, l) }
