// Package registry is the OCI image registry paasd embeds: CNCF Distribution
// (github.com/distribution/distribution/v3) as a library, storing on its
// filesystem driver under one directory, every request authenticated against
// an htpasswd file of bcrypt hashes, deletion enabled. paasd prunes old
// releases' manifests and deletes repositories through the same storage, and
// Distribution's garbage collector then removes the blobs nothing references,
// at a moment no request is under way (collecting while a push runs would
// remove the blobs it uploaded before its manifest).
//
// TLS is the server's part: Certificates makes and keeps the installation's
// CA and the registry's certificate, Login its credentials.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"

	// The htpasswd access controller registers itself with Distribution.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
)

var _ http.Handler = (*Registry)(nil)

// DefaultQuiet is how long the registry must have served no request before
// it collects garbage.
const DefaultQuiet = 5 * time.Second

// Options configures a Registry.
type Options struct {
	// Dir is the storage root, created when missing.
	Dir string
	// HTPasswd is an htpasswd file of bcrypt hashes (Login writes one): every
	// request must authenticate as one of its users with Basic
	// authentication, or gets 401. Empty: anonymous clients may pull and push.
	HTPasswd string
	// Quiet is how long no request may have been served before garbage is
	// collected (DefaultQuiet when zero).
	Quiet time.Duration
	Log   *slog.Logger
}

// Registry is an http.Handler serving the distribution API (/v2/) from
// Options.Dir. It is safe for concurrent use.
type Registry struct {
	app    *handlers.App
	driver storagedriver.StorageDriver
	ns     distribution.Namespace
	log    *slog.Logger
	quiet  time.Duration
	gate   gate
	// garbage holds a token when Prune or DeleteRepository left blobs for
	// Run to collect.
	garbage chan struct{}
}

// New returns the registry serving the images under opts.Dir. Uploads a
// previous process left unfinished are purged after a week, as Distribution
// does.
func New(opts Options) (*Registry, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "registry")
	if opts.Dir == "" {
		return nil, errors.New("open registry: no directory")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open registry %s: %w", opts.Dir, err)
	}
	if opts.HTPasswd != "" {
		// Distribution would make a file with a random user of its own.
		if _, err := os.Stat(opts.HTPasswd); err != nil {
			return nil, fmt.Errorf("open registry %s: %w", opts.Dir, err)
		}
	}
	routeLogs(log)

	// Upload URLs carry their state signed with this secret; uploads do not
	// outlive the process, so it need not be kept.
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
			// No blob descriptor cache: Prune and DeleteRepository change the
			// storage through their own view of it, which a cache in the
			// handler's would not see.
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	if opts.HTPasswd != "" {
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{"realm": "paas", "path": opts.HTPasswd}}
	}
	app, err := newApp(cfg)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", opts.Dir, err)
	}
	driver := filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100})
	ns, err := storage.NewRegistry(context.Background(), driver, storage.EnableDelete)
	if err != nil {
		_ = app.Shutdown()
		return nil, fmt.Errorf("open registry %s: %w", opts.Dir, err)
	}
	quiet := opts.Quiet
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	return &Registry{app: app, driver: driver, ns: ns, log: log, quiet: quiet, garbage: make(chan struct{}, 1)}, nil
}

// newApp is handlers.NewApp, which panics on a configuration it refuses.
func newApp(cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("configure distribution: %v", p)
		}
	}()
	return handlers.NewApp(context.Background(), cfg), nil
}

// Close stops the registry's background work (the upload purger).
func (r *Registry) Close() error { return r.app.Shutdown() }

// ServeHTTP serves the distribution API. A request waits while garbage is
// being collected; a server error is logged here, once.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if err := r.gate.enter(req.Context()); err != nil {
		return // the client went away while garbage was being collected
	}
	defer r.gate.leave()
	sw := &statusWriter{ResponseWriter: w}
	r.app.ServeHTTP(sw, req)
	if sw.status >= 500 {
		r.log.Error("registry request failed", "method", req.Method, "path", req.URL.Path, "status", sw.status)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// gate keeps garbage collection and requests apart: collection starts only
// once no request has been served for the quiet period, and requests that
// arrive meanwhile wait until it is done.
type gate struct {
	mu         sync.Mutex
	active     int           // requests being served
	last       time.Time     // when the last one ended
	collecting chan struct{} // non-nil during a collection, closed at its end
}

func (g *gate) enter(ctx context.Context) error {
	for {
		g.mu.Lock()
		wait := g.collecting
		if wait == nil {
			g.active++
			g.mu.Unlock()
			return nil
		}
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *gate) leave() {
	g.mu.Lock()
	g.active--
	g.last = time.Now()
	g.mu.Unlock()
}

// close waits until nothing has been served for quiet and shuts the gate.
func (g *gate) close(ctx context.Context, quiet time.Duration) error {
	for {
		g.mu.Lock()
		idle := time.Since(g.last)
		if g.active == 0 && g.collecting == nil && idle >= quiet {
			g.collecting = make(chan struct{})
			g.mu.Unlock()
			return nil
		}
		wait := quiet - idle
		if g.active > 0 || g.collecting != nil || wait <= 0 {
			wait = quiet / 4
		}
		g.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func (g *gate) open() {
	g.mu.Lock()
	close(g.collecting)
	g.collecting = nil
	g.last = time.Now()
	g.mu.Unlock()
}

var (
	logsMu  sync.Mutex
	logsTo  *slog.Logger
	logOnce sync.Once
)

// routeLogs sends Distribution's log lines, which it writes to logrus's
// standard logger (there is no other way in: its logger is internal), to
// log at debug level: it logs every 404 a push's existence checks get as an
// error. ServeHTTP logs the requests that failed on the server's side. The
// last registry made in the process gets the lines.
func routeLogs(log *slog.Logger) {
	logsMu.Lock()
	logsTo = log
	logsMu.Unlock()
	logOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(discard{})
		std.AddHook(slogHook{})
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type slogHook struct{}

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (slogHook) Fire(e *logrus.Entry) error {
	logsMu.Lock()
	log := logsTo
	logsMu.Unlock()
	if log == nil || !log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	args := make([]any, 0, 2*len(e.Data)+2)
	args = append(args, "distribution_level", e.Level.String())
	for k, v := range e.Data {
		args = append(args, k, v)
	}
	log.Debug(e.Message, args...)
	return nil
}
