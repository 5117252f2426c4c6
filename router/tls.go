package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"paas/router/contract"
	"paas/router/engine"
)

// errNoCertificate fails a TLS handshake for a name no certificate covers.
var errNoCertificate = errors.New("no certificate for this host name")

// tlsConfig is the HTTPS listener's configuration: the certificate is chosen
// per handshake from the table being served, so a new or renewed certificate
// applies to the next handshake with no restart.
func (r *Router) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.certificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// certificate picks the certificate for a TLS handshake by its server name
// (SNI): the first certificate of the name's app that covers the name.
func (r *Router) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	host := canonicalHost(hello.ServerName)
	if host == "" {
		return nil, errNoCertificate
	}
	t := r.table.Load()
	if t.global.isControl(host) {
		now := time.Now()
		for _, c := range t.global.ControlCerts {
			if !now.After(c.Leaf.NotAfter) && c.Leaf.VerifyHostname(host) == nil {
				return c, nil
			}
		}
		return nil, errNoCertificate
	}
	if c := t.lookup(host).cert(host, time.Now()); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// cert returns the first unexpired certificate of the route that covers host.
func (rt *route) cert(host string, now time.Time) *tls.Certificate {
	if rt == nil || rt.edge == nil {
		return nil
	}
	certs, known := rt.covering[host] // one of the route's own names: matched already
	if !known {
		certs = rt.edge.Certs
	}
	for _, c := range certs {
		if !now.After(c.Leaf.NotAfter) && (known || c.Leaf.VerifyHostname(host) == nil) {
			return c
		}
	}
	return nil
}

// coveringCerts returns, for each of hosts, the certificates among certs
// that cover it, so that choosing one takes no name matching per request.
func coveringCerts(hosts []string, certs []*tls.Certificate) map[string][]*tls.Certificate {
	if len(certs) == 0 {
		return nil
	}
	m := make(map[string][]*tls.Certificate, len(hosts))
	for _, h := range hosts {
		var covering []*tls.Certificate
		for _, c := range certs {
			if c.Leaf.VerifyHostname(h) == nil {
				covering = append(covering, c)
			}
		}
		m[h] = covering
	}
	return m
}

// serveEdge answers what the router answers itself, before any routing: an
// ACME HTTP-01 challenge on plain HTTP (for every host name, known or not),
// the redirect to HTTPS of a host name that has a certificate, and a request
// body over the app's limit. It may replace *req (to limit its body) and
// reports whether the request was answered.
func (r *Router) serveEdge(w http.ResponseWriter, req **http.Request, t *routeTable, rt *route, host string) bool {
	in := *req
	if in.TLS == nil && t.global != nil && strings.HasPrefix(in.URL.Path, contract.ACMEChallengePath) {
		token := in.URL.Path[len(contract.ACMEChallengePath):]
		if keyAuth, ok := t.global.Challenges[token]; ok && token != "" {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, keyAuth)
			return true
		}
	}
	if rt == nil || rt.edge == nil {
		return false
	}
	if in.TLS == nil && r.opts.HTTPSAddr != "" && rt.cert(host, time.Now()) != nil {
		target := "https://" + host
		if p := r.opts.HTTPSPort; p != 0 && p != 443 {
			target += ":" + strconv.Itoa(p)
		}
		target += in.URL.RequestURI()
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
		return true
	}
	if max := rt.edge.MaxBodyBytes; max > 0 && in.Body != nil && in.Body != http.NoBody {
		if in.ContentLength > max {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, "413 Content Too Large\n\nThe request body is larger than this app accepts.\n")
			return true
		}
		out := in.Clone(in.Context())
		out.Body = http.MaxBytesReader(w, in.Body, max)
		*req = out
	}
	if d := rt.edge.ReadTimeout; d > 0 {
		ctx, cancel := context.WithCancelCause((*req).Context())
		t := time.AfterFunc(d, func() { cancel(engine.ErrReadTimeout) })
		*req = (*req).WithContext(context.WithValue(ctx, readTimerKey{}, t))
	}
	return false
}

type readTimerKey struct{}

// stopReadTimeout stops the read timeout once the response headers arrived:
// a streamed response may then take as long as it needs.
func stopReadTimeout(ctx context.Context) {
	if t, ok := ctx.Value(readTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// readTimedOut answers 504 when the request failed on its read timeout.
func readTimedOut(w http.ResponseWriter, req *http.Request) bool {
	if !errors.Is(context.Cause(req.Context()), engine.ErrReadTimeout) {
		return false
	}
	writeError(w, http.StatusGatewayTimeout, engine.GatewayTimeoutPage)
	return true
}

// serveHTTPS runs srv's TLS twin on ln until it is shut down; see Serve.
func (r *Router) httpsServer(base *http.Server) *http.Server {
	return &http.Server{
		Handler:           base.Handler,
		ReadHeaderTimeout: base.ReadHeaderTimeout,
		IdleTimeout:       base.IdleTimeout,
		MaxHeaderBytes:    base.MaxHeaderBytes,
		ErrorLog:          base.ErrorLog,
		TLSConfig:         r.tlsConfig(),
	}
}

// listenHTTPS opens the HTTPS listener when Options.HTTPSAddr is set.
func (r *Router) listenHTTPS() (net.Listener, error) {
	if r.opts.HTTPSAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", r.opts.HTTPSAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", r.opts.HTTPSAddr, err)
	}
	return ln, nil
}
