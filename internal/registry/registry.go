// Package registry is the OCI/Docker image registry paasd embeds. It serves the
// subset of the distribution API that `docker push`, `docker pull` and Swarm's
// digest resolution use, from files under one directory.
//
// Layout under the directory:
//
//	blobs/sha256/<hex>                    content: every layer, config and manifest
//	repositories/<name>/_layers/<hex>     empty: blob <hex> belongs to <name>
//	repositories/<name>/_manifests/<hex>  content: the manifest's media type
//	repositories/<name>/_tags/<tag>       content: "sha256:<hex>"
//	uploads/<id>                          blob uploads in progress
//	tmp/                                  files being written before their rename
//
// Path components of a valid repository name start with [a-z0-9], so they never
// collide with the "_"-prefixed directories. Every file is written to tmp/ (or
// uploads/), fsynced, checked against its digest and renamed into place, so a
// crash leaves either the old state or the new one; New empties tmp/ and
// uploads/. One directory must be served by one Registry at a time.
package registry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

var _ http.Handler = (*Registry)(nil)

// Media types of the manifests the registry accepts.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
)

const (
	maxNameLength     = 255
	maxManifestSize   = 4 << 20
	uploadIdleTimeout = time.Hour
)

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe    = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRe = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	uploadRe = regexp.MustCompile(`^[a-f0-9]{32}$`)
)

// Registry is an http.Handler serving the /v2/ API from files under one
// directory. It is safe for concurrent use.
type Registry struct {
	dir string
	log *slog.Logger

	// repoMu is held shared by everything that adds files to blobs/ or
	// repositories/, and exclusively by DeleteRepository, which removes links
	// and then the blobs no repository links any more.
	repoMu sync.RWMutex

	uploadsMu sync.Mutex
	uploads   map[string]*upload
}

// New returns the registry's HTTP handler serving the /v2/ API from files under
// dir, creating dir if needed. Uploads left unfinished by a previous process are
// discarded. A nil log discards log lines.
func New(dir string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", dir, err)
	}
	r := &Registry{
		dir:     abs,
		log:     log.With("component", "registry"),
		uploads: make(map[string]*upload),
	}
	for _, d := range []string{r.tmpDir(), r.uploadDir()} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("open registry %s: %w", dir, err)
		}
	}
	for _, d := range []string{r.blobDir(), r.repoRoot(), r.tmpDir(), r.uploadDir()} {
		if err := mkdirAllSync(d); err != nil {
			return nil, fmt.Errorf("open registry %s: %w", dir, err)
		}
	}
	return r, nil
}

// ServeHTTP serves the /v2/ API.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	path := req.URL.Path
	if path == "/v2" || path == "/v2/" {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("{}"))
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "not a registry API path")
		return
	}
	rt, ok := parseRoute(rest)
	if !ok {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "not a registry API path")
		return
	}
	if !validName(rt.name) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name")
		return
	}
	switch rt.kind {
	case routeTags:
		if !isRead(req.Method) {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		r.listTags(w, req, rt.name)
	case routeManifest:
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			r.getManifest(w, req, rt.name, rt.ref)
		case http.MethodPut:
			r.putManifest(w, req, rt.name, rt.ref)
		default:
			methodNotAllowed(w, "GET, HEAD, PUT")
		}
	case routeBlob:
		if !isRead(req.Method) {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		r.getBlob(w, req, rt.name, rt.ref)
	case routeUploadStart:
		if req.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		r.startUpload(w, req, rt.name)
	case routeUpload:
		switch req.Method {
		case http.MethodGet, http.MethodHead:
			r.uploadStatus(w, rt.name, rt.ref)
		case http.MethodPatch:
			r.patchUpload(w, req, rt.name, rt.ref)
		case http.MethodPut:
			r.finishUpload(w, req, rt.name, rt.ref)
		case http.MethodDelete:
			r.cancelUpload(w, rt.name, rt.ref)
		default:
			methodNotAllowed(w, "GET, HEAD, PATCH, PUT, DELETE")
		}
	}
}

type routeKind int

const (
	routeTags routeKind = iota
	routeManifest
	routeBlob
	routeUploadStart
	routeUpload
)

type route struct {
	kind routeKind
	name string
	ref  string // tag or digest, blob digest, or upload id
}

// parseRoute splits the part of the path after /v2/ into a repository name and
// an endpoint. Names contain slashes, but the endpoint is recognised from the
// end of the path because references, digests and upload ids never do.
func parseRoute(rest string) (route, bool) {
	segs := strings.Split(rest, "/")
	n := len(segs)
	name := func(k int) string { return strings.Join(segs[:n-k], "/") }
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return route{kind: routeTags, name: name(2)}, true
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		if segs[n-1] == "" {
			return route{kind: routeUploadStart, name: name(3)}, true
		}
		return route{kind: routeUpload, name: name(3), ref: segs[n-1]}, true
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return route{kind: routeUploadStart, name: name(2)}, true
	case n >= 2 && segs[n-2] == "blobs":
		return route{kind: routeBlob, name: name(2), ref: segs[n-1]}, true
	case n >= 2 && segs[n-2] == "manifests":
		return route{kind: routeManifest, name: name(2), ref: segs[n-1]}, true
	}
	return route{}, false
}

func validName(name string) bool {
	return len(name) <= maxNameLength && nameRe.MatchString(name)
}

func validTag(tag string) bool { return tagRe.MatchString(tag) }

func validDigest(d string) bool { return digestRe.MatchString(d) }

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// Paths. Callers validate names, tags and digests before building paths.

func (r *Registry) tmpDir() string    { return filepath.Join(r.dir, "tmp") }
func (r *Registry) uploadDir() string { return filepath.Join(r.dir, "uploads") }
func (r *Registry) blobDir() string   { return filepath.Join(r.dir, "blobs", "sha256") }
func (r *Registry) repoRoot() string  { return filepath.Join(r.dir, "repositories") }

func (r *Registry) blobPath(digest string) string {
	return filepath.Join(r.blobDir(), strings.TrimPrefix(digest, "sha256:"))
}

func (r *Registry) repoDir(name string) string {
	return filepath.Join(r.repoRoot(), filepath.FromSlash(name))
}

func (r *Registry) layerLink(name, digest string) string {
	return filepath.Join(r.repoDir(name), "_layers", strings.TrimPrefix(digest, "sha256:"))
}

func (r *Registry) manifestLink(name, digest string) string {
	return filepath.Join(r.repoDir(name), "_manifests", strings.TrimPrefix(digest, "sha256:"))
}

func (r *Registry) tagPath(name, tag string) string {
	return filepath.Join(r.repoDir(name), "_tags", tag)
}

// repoDataDirs are the directories that make up one repository. A repository
// exists when any of them does; its directory alone may just be the parent of
// another repository.
var repoDataDirs = []string{"_layers", "_manifests", "_tags"}

func (r *Registry) repoExists(name string) bool {
	for _, d := range repoDataDirs {
		if _, err := os.Stat(filepath.Join(r.repoDir(name), d)); err == nil {
			return true
		}
	}
	return false
}

// DeleteRepository removes the repository's tags, manifest links and blob links,
// then every blob no remaining repository links. Uploads in progress to it are
// cancelled. Deleting a repository that does not exist is not an error.
func (r *Registry) DeleteRepository(name string) error {
	if !validName(name) {
		return fmt.Errorf("delete repository %q: invalid name", name)
	}
	r.uploadsMu.Lock()
	var cancelled []*upload
	for id, u := range r.uploads {
		if u.repo == name {
			delete(r.uploads, id)
			cancelled = append(cancelled, u)
		}
	}
	r.uploadsMu.Unlock()
	for _, u := range cancelled {
		u.mu.Lock()
		u.discard()
		u.mu.Unlock()
	}

	r.repoMu.Lock()
	defer r.repoMu.Unlock()
	dir := r.repoDir(name)
	for _, d := range repoDataDirs {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return fmt.Errorf("delete repository %s: %w", name, err)
		}
	}
	// Remove the repository's directory and its parents up to the root while
	// they are empty; one that still holds another repository stays.
	for d := dir; d != r.repoRoot(); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break
		}
	}
	if err := syncDir(r.repoRoot()); err != nil {
		return fmt.Errorf("delete repository %s: %w", name, err)
	}
	if err := r.removeUnlinkedBlobs(); err != nil {
		return fmt.Errorf("delete repository %s: %w", name, err)
	}
	r.log.Info("repository deleted", "repository", name)
	return nil
}

// removeUnlinkedBlobs deletes the blobs no repository links as a layer or a
// manifest. The caller holds repoMu exclusively, so no link is being added.
func (r *Registry) removeUnlinkedBlobs() error {
	linked := make(map[string]bool)
	err := filepath.WalkDir(r.repoRoot(), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() || (d.Name() != "_layers" && d.Name() != "_manifests") {
			return nil
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			linked[e.Name()] = true
		}
		return filepath.SkipDir
	})
	if err != nil {
		return fmt.Errorf("find linked blobs: %w", err)
	}
	entries, err := os.ReadDir(r.blobDir())
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	removed := 0
	for _, e := range entries {
		if linked[e.Name()] {
			continue
		}
		if err := os.Remove(filepath.Join(r.blobDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove blob: %w", err)
		}
		removed++
	}
	if removed > 0 {
		r.log.Info("unlinked blobs removed", "count", removed)
		return syncDir(r.blobDir())
	}
	return nil
}

// Errors

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeErrorDetail(w, status, code, message, nil)
}

func writeErrorDetail(w http.ResponseWriter, status int, code, message string, detail any) {
	body, _ := json.Marshal(struct {
		Errors []apiError `json:"errors"`
	}{[]apiError{{Code: code, Message: message, Detail: detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the operation is unsupported")
}

// internalError logs err once, here at the boundary, and answers 500.
func (r *Registry) internalError(w http.ResponseWriter, req *http.Request, err error) {
	r.log.Error("registry request failed", "method", req.Method, "path", req.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "UNKNOWN", "internal error")
}

// Files

// writeFileAtomic writes data to path through a synced temporary file and a
// rename, creating path's directory if needed.
func (r *Registry) writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(r.tmpDir(), "w-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.moveInto(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// moveInto renames the synced file tmp to path, creating path's directory if
// needed, and syncs the directory so the rename survives a crash.
func (r *Registry) moveInto(tmp, path string) error {
	dir := filepath.Dir(path)
	if err := mkdirAllSync(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// mkdirAllSync is os.MkdirAll that also syncs the parent of every directory it
// creates.
func mkdirAllSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
