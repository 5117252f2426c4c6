// Package router is the HTTP data plane. It routes each request by its Host
// header to the running web tasks of an app, round-robin, through a reverse
// proxy. It learns its routes itself, from a Source (the Docker API in
// production, whose event stream it follows), so it keeps serving while the
// control plane is stopped.
package router

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"paas/router/engine"
)

// Tuning that callers have no reason to change.
const (
	// sourceTimeout bounds one read of the route table, also the first one,
	// made before the first connection is accepted.
	sourceTimeout = 5 * time.Second

	headerRequestID = "X-Request-Id"

	// flushLatency bounds how long part of a response of known length may
	// wait in the server's buffer.
	flushLatency = 10 * time.Millisecond
)

// Options configure a Router and a DockerSource.
type Options struct {
	Installation string // the --name prefix; only services with this label are routed
	// CertKey opens the certificates' private keys sealed in route configs
	// (contract.OpenCertKey); nil: only plain ones load.
	CertKey      []byte
	Domain       string        // apps are served at APP.DOMAIN
	Network      string        // overlay network whose task addresses are used
	HTTPAddr     string        // listen address; default ":80"
	HTTPSAddr    string        // HTTPS listen address; none when empty
	HTTPSPort    int           // the HTTPS port clients reach, for redirects; 443 when 0
	PollInterval time.Duration // how often a source that cannot be followed is re-read; default 1s
	// ResyncInterval is how often a source that follows Docker's events
	// (a WatchedSource) re-reads everything anyway; default 30s. It is
	// stretched, up to 10 times, where a full read is slow (many apps).
	ResyncInterval time.Duration
	// NoWatch makes the router poll a WatchedSource every PollInterval
	// instead of following its changes.
	NoWatch bool
	// ConnectTimeout bounds a connection attempt to a task, and how long
	// what the router sends a task may stay unacknowledged (or a keep-alive
	// probe unanswered) before the connection fails: a task on a node that
	// is gone is ejected that soon, and its requests move on (passive.go).
	// Default 1s.
	ConnectTimeout time.Duration
	// AccessLog logs one line per request, at Info level on Log, or on
	// AccessLogOut when set.
	AccessLog bool
	// AccessLogOut receives the access log lines, encoded by the router
	// itself as Log's JSON handler would (same keys and formats), at a
	// fraction of the cost; each Write is one line.
	AccessLogOut io.Writer
	// ShutdownTimeout bounds how long Run waits for requests in flight once
	// its context is done; default 10s. Keep it below the service's stop grace
	// period.
	ShutdownTimeout time.Duration
	// IdleDrain is how long, once the context is done and the listeners
	// closed, keep-alive connections stay open for the request a client
	// may be sending on them already: it is answered with Connection:
	// close. Closing an idle connection at once races with such a request,
	// which a client sends again only when it is idempotent. 0: closed at
	// once. Set it when another router takes over the listening socket.
	IdleDrain time.Duration
	// WaitForRoutes makes Serve accept no connection before the routes
	// were read: without it a source that fails at start leaves the router
	// serving an empty table (404 for every app) until it answers. Set it
	// when another router serves the same socket meanwhile.
	WaitForRoutes bool
	// MaxConnsPerAddr bounds the connections one client address holds open
	// at once; one more is answered 429 (plain HTTP) and closed. 0: no
	// limit. Behind a load balancer or a NAT every client shares its
	// address: raise it or turn it off there.
	MaxConnsPerAddr int
	// Engine is how the front (router/engine) serves plain HTTP/1.1
	// connections; the zero value, engine.EventLoops, is what the router
	// runs with.
	Engine engine.Kind
	// AdminToken enables the control endpoint (see admin.go) for requests
	// that carry it; empty disables it.
	AdminToken string
	// ControlSocket is the unix socket the control plane's HTTP server
	// listens on (control.go); "" serves no control plane.
	ControlSocket string
	// ControlRelaySocket is where the ports process relays to the control
	// plane on another node (router/relay): the router connects there when
	// nothing answers on ControlSocket.
	ControlRelaySocket string
	Log                *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":80"
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 30 * time.Second
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = engine.DefaultConnectTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// DefaultMaxConnsPerAddr is the router's limit of connections from one
// client address: far more than browsers open (6 per host) or a busy API
// client keeps, far less than the descriptors a flood would take.
const DefaultMaxConnsPerAddr = 1000

// Source yields the current route table.
type Source interface {
	Routes(ctx context.Context) (Table, error)
}

// Router serves HTTP for every app in its route table.
type Router struct {
	src   Source
	opts  Options
	log   *slog.Logger
	table atomic.Pointer[routeTable]
	proxy *httputil.ReverseProxy
	// control proxies to the control plane; nil without ControlSocket.
	control *httputil.ReverseProxy

	mu      sync.Mutex                 // serializes Refresh; guards pool, retired and failing
	pool    map[string]*engine.Backend // by address; kept across table swaps
	retired map[string]*engine.Backend // left the table with requests still in flight
	failing bool                       // the last read of the source failed
	gen     atomic.Uint64              // table generation, +1 on every swap
	// draining is set for Options.IdleDrain once Serve's context is done:
	// every answer closes its connection.
	draining atomic.Bool
	serving  atomic.Pointer[serving] // while ServeTLS runs (health.go)
}

// routeTable is a Table compiled for lookups; it is never modified once
// published.
type routeTable struct {
	src    Table // normalized
	hosts  map[string]*route
	wild   map[string]*route // one-label wildcards, by parent domain (hosts.go)
	global *Global
}

// route is a Route compiled for the router: the engine's part (the app, its
// backends, its read timeout), which the front is given, and what only the
// router looks at.
type route struct {
	engine.Route       // the app, its backends and read timeout: what the front needs
	edge         *Edge // wildcards, certificates, limits; may be nil
	// covering lists, for each of the route's exact host names, the
	// certificates of edge that cover it.
	covering map[string][]*tls.Certificate
}

// New returns a Router that serves the routes src yields. Call Run to serve,
// or Refresh and ServeHTTP to drive it by hand.
func New(src Source, opts Options) *Router {
	opts = opts.withDefaults()
	r := &Router{
		src:     src,
		opts:    opts,
		log:     opts.Log.With("component", "router"),
		pool:    map[string]*engine.Backend{},
		retired: map[string]*engine.Backend{},
	}
	r.table.Store(&routeTable{hosts: map[string]*route{}})
	if opts.ControlSocket != "" {
		r.control = newControlProxy(opts.ControlSocket, opts.ControlRelaySocket, opts.ConnectTimeout, r)
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: balancer{},
		// Server-sent events and bodies of unknown length (chunked streams)
		// are flushed at once by ReverseProxy itself; a body of known length
		// is flushed within flushLatency. (-1 here would flush the headers
		// from a timer before the body, two writes for every response.)
		FlushInterval:  flushLatency,
		BufferPool:     engine.CopyBuffers,
		ModifyResponse: setResponseID,
		ErrorHandler:   r.proxyError,
		ErrorLog:       slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	return r
}

// Run listens on Options.HTTPAddr and serves until ctx is done, then shuts
// down gracefully.
func (r *Router) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", r.opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", r.opts.HTTPAddr, err)
	}
	tlsLn, err := r.listenHTTPS()
	if err != nil {
		ln.Close()
		return err
	}
	return r.ServeTLS(ctx, ln, tlsLn)
}

// Serve is Run on a listener the caller opened; it closes ln. Routes are
// loaded before the first connection is accepted (waiting at most
// sourceTimeout, or until they could be read with WaitForRoutes) and re-read
// every PollInterval until the graceful shutdown has finished.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	return r.ServeTLS(ctx, ln, nil)
}

// ServeTLS is Serve with, when tlsLn is not nil, HTTPS (HTTP/1.1 and HTTP/2)
// on tlsLn; certificates are chosen by server name from the route table.
func (r *Router) ServeTLS(ctx context.Context, ln, tlsLn net.Listener) error {
	for r.Refresh(ctx) != nil && r.opts.WaitForRoutes { // a failure is logged
		select {
		case <-ctx.Done():
			ln.Close()
			if tlsLn != nil {
				tlsLn.Close()
			}
			return nil
		case <-time.After(r.opts.PollInterval):
		}
	}

	// Keep routes current while requests drain, so stop polling only at the end.
	pollCtx, stopPolling := context.WithCancel(context.WithoutCancel(ctx))
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		r.poll(pollCtx)
	}()
	defer func() {
		stopPolling()
		<-polled
	}()

	// The front serves the listeners; net/http serves what it hands over
	// (front.go): plain HTTP/1 connections and TLS ones with HTTP/1 that
	// need it on fb, HTTP/2 on h2.
	fb := &http.Server{
		Handler:           http.HandlerFunc(r.serveHandedOff),
		ConnContext:       engine.HandedOffContext,
		ReadHeaderTimeout: engine.HeaderTimeout,
		IdleTimeout:       engine.IdleTimeout,
		MaxHeaderBytes:    maxHeadBytes,
		ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
	}
	fbLn := engine.NewHandoff(ln.Addr())
	f := engine.New(frontHost{r}, engine.Config{
		Kind:            r.opts.Engine,
		AccessLog:       r.opts.AccessLog,
		MaxConnsPerAddr: r.opts.MaxConnsPerAddr,
		Log:             r.log,
	}, fbLn)
	served := make(chan error, 4)
	servers := []*http.Server{fb}
	plain := watchListener(ln)
	st := &serving{f: f, listeners: []*watchedListener{plain}}
	go func() { served <- fb.Serve(fbLn) }()
	go func() { served <- f.Serve(plain, nil, nil) }()
	if tlsLn != nil {
		h2 := r.httpsServer(fb)
		h2.ConnState = f.H2ConnState
		servers = append(servers, h2)
		h2Ln := engine.NewHandoff(tlsLn.Addr())
		wl := watchListener(tlsLn)
		st.listeners = append(st.listeners, wl)
		go func() { served <- h2.Serve(h2Ln) }()
		go func() { served <- f.Serve(wl, r.tlsConfig(), h2Ln) }()
		r.log.Info("serving https", "addr", tlsLn.Addr().String())
	}
	r.serving.Store(st)
	watchCtx, stopWatching := context.WithCancel(ctx)
	go watchAccepts(watchCtx, st.listeners)
	r.log.Info("serving", "addr", ln.Addr().String(), "installation", r.opts.Installation, "domain", r.opts.Domain)

	var failed error
	select {
	case err := <-served: // a listener failed
		if err == nil || errors.Is(err, http.ErrServerClosed) {
			err = errors.New("stopped serving")
		}
		failed = fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	stopWatching()
	r.serving.Store(nil)
	_ = ln.Close()
	if tlsLn != nil {
		_ = tlsLn.Close()
	}
	if failed == nil && r.opts.IdleDrain > 0 {
		r.draining.Store(true)
		time.Sleep(min(r.opts.IdleDrain, r.opts.ShutdownTimeout/2))
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), r.opts.ShutdownTimeout)
	defer cancelShutdown()
	if failed != nil {
		cancelShutdown()
	}
	var down sync.WaitGroup
	errs := make([]error, len(servers)+1)
	down.Go(func() { errs[0] = f.Shutdown(shutdownCtx) })
	for i, srv := range servers {
		down.Go(func() {
			if errs[i+1] = srv.Shutdown(shutdownCtx); errs[i+1] != nil {
				srv.Close()
			}
		})
	}
	down.Wait()
	for range 2 * len(servers) {
		if failed != nil {
			break // one of them already reported
		}
		<-served
	}
	r.closeIdle()
	if failed != nil {
		return failed
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	r.log.Info("stopped")
	return nil
}

// serveHandedOff is ServeHTTP for the connections the front hands over: a
// TLS one keeps its TLS state.
func (r *Router) serveHandedOff(w http.ResponseWriter, req *http.Request) {
	if req.ProtoMajor == 1 && r.draining.Load() {
		w.Header().Set("Connection", "close") // net/http closes after the answer
	}
	if req.TLS == nil {
		req.TLS = engine.TLSState(req.Context())
	}
	r.ServeHTTP(w, req)
}

// poll keeps the routes current: it follows a WatchedSource's changes, or
// reads the source every PollInterval.
func (r *Router) poll(ctx context.Context) {
	if ws, ok := r.src.(WatchedSource); ok && !r.opts.NoWatch && r.follow(ctx, ws) {
		return
	}
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = r.Refresh(ctx) // logged by Refresh
	}
}

// Refresh reads the route table from the source once and swaps it in if it
// changed. When the source fails, the table being served stays as it is;
// the first failure of a run of failures is logged, and so is the recovery.
func (r *Router) Refresh(ctx context.Context) error {
	readCtx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	t, err := r.src.Routes(readCtx)

	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("read routes: %w", err) // stopping, not failing
		}
		if !r.failing {
			r.log.Warn("cannot read routes; serving the last known ones", "err", err)
		}
		r.failing = true
		return fmt.Errorf("read routes: %w", err)
	}
	if r.failing {
		r.failing = false
		r.log.Info("reading routes again")
	}
	r.apply(t)
	return nil
}

// apply publishes t if it differs from the table being served. r.mu is held.
func (r *Router) apply(t Table) {
	n := t.normalize()
	cur := r.table.Load()
	if n.same(cur.src) {
		return
	}
	pool := make(map[string]*engine.Backend, len(r.pool))
	hosts := make(map[string]*route)
	wild := make(map[string]*route)
	if n.Global != nil {
		// The control plane's names come first, as a route with no
		// backend: the front hands them to net/http (ServeHTTP proxies
		// them to the control plane), and no app's name or wildcard takes
		// them.
		for h := range n.Global.ControlHosts {
			hosts[h] = &route{Route: engine.Route{App: controlRouteName}}
		}
	}
	for _, rt := range n.Routes {
		cr := &route{Route: engine.Route{App: rt.App, Backends: make([]*engine.Backend, 0, len(rt.Backends))}, edge: rt.Edge}
		if rt.Edge != nil {
			cr.ReadTimeout = rt.Edge.ReadTimeout
			cr.covering = coveringCerts(rt.Hosts, rt.Edge.Certs)
		}
		for _, b := range rt.Backends {
			be := pool[b.Addr]
			if be == nil {
				if be = r.pool[b.Addr]; be == nil {
					if be = r.retired[b.Addr]; be == nil {
						be = engine.NewBackend(b.Addr, r.opts.ConnectTimeout, r.log)
					}
					delete(r.retired, b.Addr)
				}
				pool[b.Addr] = be
			}
			cr.Backends = append(cr.Backends, be)
		}
		for _, h := range rt.Hosts {
			if other, taken := hosts[h]; taken {
				r.log.Warn("host name claimed by two apps; the first one keeps it", "host", h, "app", other.App, "ignored_app", rt.App)
				continue
			}
			hosts[h] = cr
		}
		addWildcards(r.log, wild, cr)
	}
	r.table.Store(&routeTable{src: n, hosts: hosts, wild: wild, global: n.Global})
	r.gen.Add(1)

	// Requests already on their way keep the backend they picked; only idle
	// connections to tasks that left the table are closed. A backend with
	// requests in flight is remembered until they finish, so that the
	// control plane can wait for them before it stops the task.
	for addr, be := range r.pool {
		if pool[addr] == nil {
			be.CloseIdle()
			if be.InFlight() > 0 {
				r.retired[addr] = be
			}
		}
	}
	r.pool = pool
	logChanges(r.log, cur.src, n)
}

// logChanges logs one line per app whose route changed.
func logChanges(log *slog.Logger, old, cur Table) {
	before := make(map[string]Route, len(old.Routes))
	for _, rt := range old.Routes {
		before[rt.App] = rt
	}
	for _, rt := range cur.Routes {
		prev, ok := before[rt.App]
		delete(before, rt.App)
		if ok && (Table{Routes: []Route{prev}}).same(Table{Routes: []Route{rt}}) {
			continue
		}
		addrs := make([]string, len(rt.Backends))
		for i, b := range rt.Backends {
			addrs[i] = b.Addr
		}
		log.Info("route updated", "app", rt.App, "hosts", rt.Hosts, "backends", addrs)
	}
	for app := range before {
		log.Info("route removed", "app", app)
	}
}

func (r *Router) closeIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, be := range r.pool {
		be.CloseIdle()
	}
}

// proxied is what one proxied request carries through the ReverseProxy in its
// context: where it goes, and which backend served it.
type proxied struct {
	route   *route
	id      string
	backend string // set by balancer.RoundTrip
	// badBody: reading the client's request body failed (malformed chunked
	// framing), so the request failed by the client's fault: a 400.
	badBody atomic.Bool
}

type proxiedKey struct{}

// ServeHTTP routes req by its Host header.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.isAdmin(req) {
		r.serveAdmin(w, req)
		return
	}
	id := req.Header.Get(headerRequestID)
	if !engine.ValidRequestID(id) {
		id = rand.Text()
	}
	tbl := r.table.Load()
	host := canonicalHost(req.Host)
	if tbl.global.isControl(host) {
		r.serveControl(w, req, host)
		return
	}
	rt := tbl.lookup(host)
	var pr *proxied
	if r.opts.AccessLog {
		start := time.Now()
		lw := &logWriter{ResponseWriter: w}
		w = lw
		// Deferred so that a request the proxy aborts (panic with
		// http.ErrAbortHandler) is logged too.
		defer func() { r.logAccess(req, lw, rt, pr, id, start) }()
	}
	switch {
	case refuseHead(w, req, id):
	case r.serveEdge(w, &req, tbl, rt, host):
	case rt == nil:
		w.Header().Set(headerRequestID, id)
		writeError(w, http.StatusNotFound, "404 Not Found\n\nNo app is served at this address.\n")
	case len(rt.Backends) == 0:
		w.Header().Set(headerRequestID, id)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "503 Service Unavailable\n\nThe app has no running instance right now. Try again in a moment.\n")
	default:
		pr = &proxied{route: rt, id: id}
		r.proxy.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), proxiedKey{}, pr)))
	}
}

// Request heads are held to nginx's default sizes (large_client_header_buffers
// 4 8k): a line, with its CRLF, fits in 8 KB, and the head in 32 KB. The
// front (router/engine) reads heads up to 8 KB itself, so only the heads it
// hands to net/http can be larger: net/http refuses a head over
// MaxHeaderBytes+4096 bytes with a 431 (also one whose request line is that
// long), and refuseHead a line over 8 KB.
const (
	maxHeadLine  = 8 << 10
	maxHeadBytes = 32<<10 - 4096 // net/http adds 4096 of its own
)

// refuseHead answers a request whose request line (414) or a header line
// (431) is over maxHeadLine, as nginx does, and reports whether it did.
func refuseHead(w http.ResponseWriter, req *http.Request, id string) bool {
	code := 0
	if len(req.Method)+len(req.RequestURI)+len(req.Proto)+4 > maxHeadLine {
		code = http.StatusRequestURITooLong
	} else {
	headers:
		for k, vs := range req.Header {
			for _, v := range vs {
				if len(k)+len(v)+4 > maxHeadLine {
					code = http.StatusRequestHeaderFieldsTooLarge
					break headers
				}
			}
		}
	}
	if code == 0 {
		return false
	}
	w.Header().Set(headerRequestID, id)
	w.Header().Set("Connection", "close")
	writeError(w, code, fmt.Sprintf("%d %s\n\nA line of the request is longer than 8 KB.\n", code, http.StatusText(code)))
	return true
}

// badRequestPage answers a request whose body is malformed; the other error
// pages of a proxied request are the engine's, the same on both paths.
const badRequestPage = "400 Bad Request\n\nThe request's body is malformed.\n"

func writeError(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// rewrite builds the outgoing request. The backend is chosen later, by
// balancer.RoundTrip, so that a failed dial can move on to another one.
func rewrite(p *httputil.ProxyRequest) {
	pr := p.In.Context().Value(proxiedKey{}).(*proxied)
	p.Out.URL.Scheme = "http"
	p.Out.URL.Host = pr.route.App // placeholder; replaced by a backend address
	p.Out.Host = p.In.Host        // the app sees the host name it was called by
	// The router is the edge: X-Forwarded-* sent by the client are dropped
	// (ReverseProxy removes them before Rewrite) and set from the connection.
	p.SetXForwarded()
	p.Out.Header.Set(headerRequestID, pr.id)
}

func setResponseID(resp *http.Response) error {
	stopReadTimeout(resp.Request.Context())
	if pr, ok := resp.Request.Context().Value(proxiedKey{}).(*proxied); ok {
		resp.Header.Set(headerRequestID, pr.id)
	}
	return nil
}

func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	pr, _ := req.Context().Value(proxiedKey{}).(*proxied)
	if readTimedOut(w, req) {
		return
	}
	if req.Context().Err() != nil {
		// The client went away; there is nobody to answer.
		w.WriteHeader(499)
		return
	}
	if pr != nil {
		w.Header().Set(headerRequestID, pr.id)
		if pr.badBody.Load() {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusBadRequest, badRequestPage)
			return
		}
		r.log.Warn("proxy error", "app", pr.route.App, "backend", pr.backend, "request_id", pr.id, "err", err)
	}
	writeError(w, http.StatusBadGateway, engine.BadGatewayPage)
}

// balancer is the ReverseProxy's transport: it sends the request to the
// route's backends in round-robin order, moving on to the next one when a
// connection cannot be made (nothing was sent, so this is safe for every
// method) and, once, when the connection of an idempotent request whose body
// was not consumed fails (a task stopping under it, or its node gone). A
// backend that failed is ejected (router/engine/passive.go).
type balancer struct{}

func (balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, ok := req.Context().Value(proxiedKey{}).(*proxied)
	if !ok {
		return nil, errors.New("route a request: no route in its context")
	}
	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &replayBody{rc: req.Body, bad: &pr.badBody}
	}
	var buf [16]*engine.Backend
	order := pr.route.Order(buf[:0], time.Now().UnixNano())
	var lastErr error
	failedSends := 0 // requests sent and lost; a dial failure sends nothing
	for _, b := range order {
		out := req.WithContext(req.Context()) // a shallow copy we may change
		u := *req.URL
		u.Host = b.Addr()
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		pr.backend = b.Addr()
		b.Begin()
		resp, err := b.RoundTrip(out)
		if err == nil {
			resp.Body = countBody(resp.Body, b)
			return resp, nil
		}
		b.End()
		lastErr = err
		if req.Context().Err() != nil {
			break // the client left, or the read timeout: not the task's failure
		}
		b.Eject(time.Now(), err)
		if !engine.IsDialError(err) {
			failedSends++
		}
		// One more try after a lost request: a request that makes every
		// task crash must not take them all down.
		if !retriable(req, body, err) || failedSends > 1 {
			break
		}
	}
	if body != nil {
		_ = body.rc.Close()
	}
	return nil, lastErr
}

// retriable reports whether a request that failed with err may be sent to
// another backend: when it was never sent (the dial failed), or when it is
// idempotent and its body, if any, was not consumed (the backend closed or
// reset the connection, as a stopping task does).
func retriable(req *http.Request, body *replayBody, err error) bool {
	if req.Context().Err() != nil || (body != nil && body.read.Load()) {
		return false
	}
	return engine.IsDialError(err) || idempotent(req)
}

func idempotent(req *http.Request) bool {
	if engine.IdempotentMethod(req.Method) {
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// replayBody lets the same request body be offered to a second backend after
// a failed dial. http.Transport closes the body when a dial fails; until
// something has been read that Close is held back (the server closes the
// inbound body when the handler returns anyway).
type replayBody struct {
	rc   io.ReadCloser
	read atomic.Bool  // the transport reads from its own goroutine
	bad  *atomic.Bool // set when reading fails other than at the end
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.bad.Store(true)
	}
	return n, err
}

func (b *replayBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}

func (r *Router) logAccess(req *http.Request, lw *logWriter, rt *route, pr *proxied, id string, start time.Time) {
	l := engine.RequestLog{Method: req.Method, Host: []byte(req.Host), Path: []byte(req.URL.Path), Status: lw.status,
		Start: start, Bytes: lw.bytes, ID: []byte(id)}
	if rt != nil {
		l.App = rt.App
	}
	if pr != nil {
		l.Backend = pr.backend
	}
	r.logRequest(req.Context(), l)
}

// logWriter records what the access log needs. It keeps Flush and Hijack
// working (streaming and protocol upgrades go through it).
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *logWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *logWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
