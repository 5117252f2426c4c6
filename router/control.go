package router

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"
)

// The control plane's HTTP server (paasd's API and dashboard) is served at
// the host names of contract.ControlConfig, through the unix socket
// Options.ControlSocket, where paasd listens on this node: it needs no
// port of its own, and keeps the router's TLS. On the other managers
// nothing answers there, and the router connects to
// Options.ControlRelaySocket instead, where the ports process relays the
// connection to paasd's node (router/relay).

// controlRouteName names the route table's entry of each control plane
// name: it has no backends, so the front leaves these requests to
// net/http, and it takes the name from any app.
const controlRouteName = "(control plane)"

// newControlProxy returns the proxy to the control plane at socket, or
// through relay when nothing answers at socket.
func newControlProxy(socket, relay string, timeout time.Duration, r *Router) *httputil.ReverseProxy {
	dialer := &net.Dialer{Timeout: timeout}
	return &httputil.ReverseProxy{
		Rewrite: func(p *httputil.ProxyRequest) {
			p.Out.URL.Scheme = "http"
			p.Out.URL.Host = "control-plane"
			p.Out.Host = p.In.Host
			p.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				c, err := dialer.DialContext(ctx, "unix", socket)
				if err == nil || relay == "" || ctx.Err() != nil {
					return c, err
				}
				if c, rerr := dialer.DialContext(ctx, "unix", relay); rerr == nil {
					return c, nil
				}
				return nil, err
			},
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     60 * time.Second,
			DisableCompression:  true,
		},
		FlushInterval: -1, // server-sent events (followed logs) as they come
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			if req.Context().Err() != nil {
				w.WriteHeader(499)
				return
			}
			r.log.Warn("control plane unreachable", "err", err)
			writeError(w, http.StatusBadGateway, "502 Bad Gateway\n\nThe paas control plane does not answer on this node.\n")
		},
	}
}

// serveControl answers a request for the control plane: the redirect to
// HTTPS on plain HTTP when HTTPS is served, else the control plane's answer.
func (r *Router) serveControl(w http.ResponseWriter, req *http.Request, host string) {
	if r.control == nil {
		writeError(w, http.StatusNotFound, "404 Not Found\n\nNo app is served at this address.\n")
		return
	}
	if req.TLS == nil && r.opts.HTTPSAddr != "" {
		target := "https://" + host
		if p := r.opts.HTTPSPort; p != 0 && p != 443 {
			target += ":" + strconv.Itoa(p)
		}
		w.Header().Set("Location", target+req.URL.RequestURI())
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
		return
	}
	r.control.ServeHTTP(w, req)
}
