// Package web is paasd's HTTP door, next to SSH: the JSON API under
// /api/v1, which runs the very commands `ssh paas ...` runs (the same
// dispatcher, access rules, validation and audit log), and the handlers
// other parts mount beside it (sign-in under /auth/, the dashboard). It is
// served at paas.DOMAIN through the router.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"paas/internal/paas"
)

// Authenticator tells who makes a request: ok false when the request carries no credentials it knows; an error when it carries bad ones (refused with 401).
type Authenticator interface {
	Authenticate(r *http.Request) (id paas.Identity, ok bool, err error)
}

// Commands runs one command line as id, as the SSH server does
// (commands.Dispatcher behind commands.UserAuth), and returns its exit code.
type Commands interface {
	RunCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

// Refusals records requests refused before any command ran (a bad token),
// in the audit log.
type Refusals interface {
	Refused(id paas.Identity, action, app, detail string)
}

// Mount is a handler served under a path prefix ("/auth/", "/").
type Mount struct {
	Prefix  string
	Handler http.Handler
}

// Options configure a Server.
type Options struct {
	Commands       Commands
	Authenticators []Authenticator
	Mounts         []Mount
	Refusals       Refusals // may be nil
	// Guard, when set, sees every request before the routes do (the
	// sign-in's CSRF check of requests signed in by a cookie).
	Guard func(http.Handler) http.Handler
	// Relayed, when set, says whether a request that came over TLS (paasd's
	// relay listener, not the control socket) came through the router's
	// relay (contract.IsRelayClient): only then is its X-Forwarded-For
	// believed.
	Relayed func(*tls.ConnectionState) bool
	Log     *slog.Logger
}

// Server serves the API and the mounted handlers.
type Server struct {
	opts    Options
	mux     *http.ServeMux
	handler http.Handler // mux behind Guard
	log     *slog.Logger
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Log.With("component", "web")}
	s.routes()
	for _, m := range opts.Mounts {
		s.mux.Handle(m.Prefix, m.Handler)
	}
	s.handler = s.mux
	if opts.Guard != nil {
		s.handler = opts.Guard(s.mux)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	s.handler.ServeHTTP(w, r)
}

// Authenticate asks each Authenticator in turn: the first that knows the
// request's credentials says who it is; none knowing them is ok false.
// Mounted handlers use it too.
func (s *Server) Authenticate(r *http.Request) (paas.Identity, bool, error) {
	for _, a := range s.opts.Authenticators {
		id, ok, err := a.Authenticate(r)
		if err != nil {
			return paas.Identity{}, false, err
		}
		if ok {
			return id, true, nil
		}
	}
	return paas.Identity{}, false, nil
}

// Serve serves on ln until ctx ends, then lets requests finish for grace
// (streams such as followed logs are cut).
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	var handler http.Handler = s
	switch {
	case ln.Addr().Network() == "unix":
		handler = fromRouter(s, nil)
	case s.opts.Relayed != nil:
		handler = fromRouter(s, func(r *http.Request) bool { return r.TLS != nil && s.opts.Relayed(r.TLS) })
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	streams, stopStreams := context.WithCancel(context.Background())
	srv.BaseContext = func(net.Listener) context.Context { return streams }
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		stopStreams()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	stopStreams()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	<-done
	return err
}

// fromRouter gives each request the client's address the router forwards.
// On the control socket only the router connects (the socket is the
// router's volume's, mode 0600) and it sets X-Forwarded-For itself, having
// dropped any the client sent; the last address is the one it saw, and
// what sign-in and the audit log then name instead of the socket's "@".
// On the relay listener, the router's bytes come through the relay
// unchanged: trusted, when set, says which requests did (the others keep
// the address they came from).
func fromRouter(next http.Handler, trusted func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fwd := r.Header.Values("X-Forwarded-For")
		if len(fwd) > 0 && (trusted == nil || trusted(r)) {
			last := fwd[len(fwd)-1]
			last = strings.TrimSpace(last[strings.LastIndexByte(last, ',')+1:])
			if ip, err := netip.ParseAddr(last); err == nil {
				r.RemoteAddr = ip.String()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// BearerToken is the token of an "Authorization: Bearer TOKEN" header, ""
// when the request has none.
func BearerToken(r *http.Request) string {
	const prefix = "bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}

// TokenIdentifier checks an API token (auth.Tokens).
type TokenIdentifier interface {
	Identify(ctx context.Context, token string) (paas.Identity, error)
}

// Tokens authenticates requests that carry an API token as a bearer token.
type Tokens struct{ Tokens TokenIdentifier }

var _ Authenticator = Tokens{}

// Authenticate implements Authenticator.
func (t Tokens) Authenticate(r *http.Request) (paas.Identity, bool, error) {
	tok := BearerToken(r)
	if tok == "" {
		return paas.Identity{}, false, nil
	}
	id, err := t.Tokens.Identify(r.Context(), tok)
	if err != nil {
		return paas.Identity{}, false, err
	}
	return id, true, nil
}
