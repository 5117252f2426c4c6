package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, name, digest string) {
	if !validDigest(digest) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest: only sha256:<64 hex> is supported")
		return
	}
	if !r.blobLinked(name, digest) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	f, err := os.Open(r.blobPath(digest))
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", digest)
	h.Set("ETag", `"`+digest+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	// ServeContent answers HEAD, Range and If-None-Match and sets Content-Length.
	http.ServeContent(w, req, "", time.Time{}, f)
}

// blobLinked reports whether digest is a layer, config or manifest of the
// repository; a blob is served only through a repository that links it.
func (r *Registry) blobLinked(name, digest string) bool {
	if _, err := os.Stat(r.layerLink(name, digest)); err == nil {
		return true
	}
	_, err := os.Stat(r.manifestLink(name, digest))
	return err == nil
}

// linkBlob records that the repository holds digest. The caller holds repoMu
// shared and has committed the blob.
func (r *Registry) linkBlob(name, digest string) error {
	path := r.layerLink(name, digest)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return r.writeFileAtomic(path, nil)
}

// commitBlob moves the synced file tmp, whose content has digest, into the
// blob store and links it to the repository.
func (r *Registry) commitBlob(name, tmp, digest string) error {
	r.repoMu.RLock()
	defer r.repoMu.RUnlock()
	if _, err := os.Stat(r.blobPath(digest)); err == nil {
		_ = os.Remove(tmp)
	} else if err := r.moveInto(tmp, r.blobPath(digest)); err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	if err := r.linkBlob(name, digest); err != nil {
		return fmt.Errorf("link blob %s: %w", digest, err)
	}
	return nil
}

func blobCreated(w http.ResponseWriter, name, digest string) {
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/blobs/"+digest)
	h.Set("Docker-Content-Digest", digest)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// Uploads

// upload is a blob upload in progress. Its data is in a file under uploads/ and
// its running digest in memory, so uploads do not survive a restart; clients
// start over.
type upload struct {
	id, repo string

	mu      sync.Mutex // held while a request works on the upload
	f       *os.File
	size    int64
	hash    hash.Hash
	touched time.Time
	done    bool // finished, cancelled or broken: the file is gone
}

// discard closes and removes the upload's file. The caller holds u.mu.
func (u *upload) discard() {
	if u.done {
		return
	}
	u.done = true
	name := u.f.Name()
	_ = u.f.Close()
	_ = os.Remove(name)
}

// appendBody copies body to the end of the upload. If the file cannot take
// every byte read, the file and the running digest may disagree, so the
// upload is discarded.
func (u *upload) appendBody(body io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if _, err := u.f.Write(buf[:m]); err != nil {
				u.discard()
				return n, fmt.Errorf("write upload: %w", err)
			}
			u.hash.Write(buf[:m])
			u.size += int64(m)
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("read upload body: %w", rerr)
		}
	}
}

func (u *upload) digest() string {
	return "sha256:" + hex.EncodeToString(u.hash.Sum(nil))
}

func (r *Registry) newUpload(name string) (*upload, error) {
	r.expireUploads()
	id := newID()
	f, err := os.OpenFile(filepath.Join(r.uploadDir(), id), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	u := &upload{id: id, repo: name, f: f, hash: sha256.New(), touched: time.Now()}
	r.uploadsMu.Lock()
	r.uploads[id] = u
	r.uploadsMu.Unlock()
	return u, nil
}

// expireUploads discards uploads nobody has touched for uploadIdleTimeout. An
// upload a request is working on is locked and so is left alone.
func (r *Registry) expireUploads() {
	r.uploadsMu.Lock()
	defer r.uploadsMu.Unlock()
	for id, u := range r.uploads {
		if !u.mu.TryLock() {
			continue
		}
		if time.Since(u.touched) > uploadIdleTimeout {
			u.discard()
			delete(r.uploads, id)
			r.log.Info("idle upload discarded", "repository", u.repo, "upload", id)
		}
		u.mu.Unlock()
	}
}

// lockUpload returns the repository's upload id, locked, or nil.
func (r *Registry) lockUpload(name, id string) *upload {
	if !uploadRe.MatchString(id) {
		return nil
	}
	r.uploadsMu.Lock()
	u := r.uploads[id]
	r.uploadsMu.Unlock()
	if u == nil || u.repo != name {
		return nil
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return nil
	}
	u.touched = time.Now()
	return u
}

// endUpload forgets the upload and removes its file if it is still there. The
// caller holds u.mu.
func (r *Registry) endUpload(u *upload) {
	u.discard()
	r.uploadsMu.Lock()
	delete(r.uploads, u.id)
	r.uploadsMu.Unlock()
}

func uploadUnknown(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
}

// uploadHeaders sets what every answer about an upload in progress carries.
func uploadHeaders(w http.ResponseWriter, u *upload) {
	h := w.Header()
	h.Set("Location", "/v2/"+u.repo+"/blobs/uploads/"+u.id)
	h.Set("Docker-Upload-UUID", u.id)
	end := u.size - 1
	if end < 0 {
		end = 0
	}
	h.Set("Range", "0-"+strconv.FormatInt(end, 10))
	h.Set("Content-Length", "0")
}

// startUpload handles POST /v2/<name>/blobs/uploads/: a cross-repository
// mount (?mount=&from=), a monolithic upload (?digest=) or the start of a
// chunked one.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, name string) {
	q := req.URL.Query()
	if mount, from := q.Get("mount"), q.Get("from"); mount != "" {
		if validDigest(mount) && validName(from) && r.blobLinked(from, mount) {
			if err := r.mountBlob(name, mount); err != nil {
				r.internalError(w, req, err)
				return
			}
			blobCreated(w, name, mount)
			return
		}
		// Not mountable: start an ordinary upload, as the spec asks.
	} else if digest := q.Get("digest"); digest != "" {
		r.monolithicUpload(w, req, name, digest)
		return
	}
	u, err := r.newUpload(name)
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	uploadHeaders(w, u)
	w.WriteHeader(http.StatusAccepted)
}

func (r *Registry) mountBlob(name, digest string) error {
	r.repoMu.RLock()
	defer r.repoMu.RUnlock()
	// The source repository may have been deleted, and its blob with it,
	// since blobLinked looked.
	if _, err := os.Stat(r.blobPath(digest)); err != nil {
		return fmt.Errorf("mount blob %s: %w", digest, err)
	}
	if err := r.linkBlob(name, digest); err != nil {
		return fmt.Errorf("mount blob %s: %w", digest, err)
	}
	return nil
}

func (r *Registry) monolithicUpload(w http.ResponseWriter, req *http.Request, name, digest string) {
	if !validDigest(digest) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest: only sha256:<64 hex> is supported")
		return
	}
	u, err := r.newUpload(name)
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	defer r.endUpload(u)
	if _, err := u.appendBody(req.Body); err != nil {
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	r.commitUpload(w, req, u, digest)
}

func (r *Registry) uploadStatus(w http.ResponseWriter, name, id string) {
	u := r.lockUpload(name, id)
	if u == nil {
		uploadUnknown(w)
		return
	}
	defer u.mu.Unlock()
	uploadHeaders(w, u)
	w.WriteHeader(http.StatusNoContent)
}

func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, name, id string) {
	u := r.lockUpload(name, id)
	if u == nil {
		uploadUnknown(w)
		return
	}
	defer u.mu.Unlock()
	start, end := int64(-1), int64(-1)
	if cr := req.Header.Get("Content-Range"); cr != "" {
		var ok bool
		start, end, ok = parseContentRange(cr)
		if !ok {
			writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "invalid Content-Range")
			return
		}
		if start != u.size {
			uploadHeaders(w, u)
			writeError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Sprintf("chunk starts at %d, upload has %d bytes", start, u.size))
			return
		}
	}
	n, err := u.appendBody(req.Body)
	if err != nil {
		if u.done {
			r.endUpload(u)
			r.internalError(w, req, err)
			return
		}
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	if end >= 0 && n != end-start+1 {
		// The running digest already holds the bytes, so the upload cannot
		// go back to where the chunk began.
		r.endUpload(u)
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID",
			fmt.Sprintf("chunk has %d bytes, Content-Range says %d; upload discarded", n, end-start+1))
		return
	}
	uploadHeaders(w, u)
	w.WriteHeader(http.StatusAccepted)
}

// parseContentRange parses a PATCH chunk's "start-end" (inclusive); a
// "bytes " prefix is tolerated.
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimPrefix(s, "bytes ")
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, end, true
}

func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, name, id string) {
	u := r.lockUpload(name, id)
	if u == nil {
		uploadUnknown(w)
		return
	}
	defer u.mu.Unlock()
	digest := req.URL.Query().Get("digest")
	if !validDigest(digest) {
		// The upload stays: the client may retry with a valid digest.
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "missing or invalid digest: only sha256:<64 hex> is supported")
		return
	}
	if _, err := u.appendBody(req.Body); err != nil {
		if u.done {
			r.endUpload(u)
			r.internalError(w, req, err)
			return
		}
		writeError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	defer r.endUpload(u)
	r.commitUpload(w, req, u, digest)
}

// commitUpload checks the upload's content against digest and, if it matches,
// stores it as a blob of the upload's repository. The caller holds u.mu and
// ends the upload afterwards.
func (r *Registry) commitUpload(w http.ResponseWriter, req *http.Request, u *upload, digest string) {
	if got := u.digest(); got != digest {
		writeErrorDetail(w, http.StatusBadRequest, "DIGEST_INVALID",
			"provided digest did not match uploaded content", map[string]string{"expected": digest, "got": got})
		return
	}
	if err := u.f.Sync(); err != nil {
		r.internalError(w, req, fmt.Errorf("sync upload: %w", err))
		return
	}
	if err := u.f.Close(); err != nil {
		r.internalError(w, req, fmt.Errorf("close upload: %w", err))
		return
	}
	u.done = true // the file is closed; it is renamed below or removed here
	tmp := u.f.Name()
	if err := r.commitBlob(u.repo, tmp, digest); err != nil {
		_ = os.Remove(tmp)
		r.internalError(w, req, err)
		return
	}
	blobCreated(w, u.repo, digest)
}

func (r *Registry) cancelUpload(w http.ResponseWriter, name, id string) {
	u := r.lockUpload(name, id)
	if u == nil {
		uploadUnknown(w)
		return
	}
	defer u.mu.Unlock()
	r.endUpload(u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}
