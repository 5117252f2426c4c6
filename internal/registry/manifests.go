package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// resolve turns a tag or digest into the digest of a manifest the repository
// holds, and returns the media type it was pushed with.
func (r *Registry) resolve(name, ref string) (digest, mediaType string, err error) {
	digest = ref
	if !strings.Contains(ref, ":") {
		b, err := os.ReadFile(r.tagPath(name, ref))
		if err != nil {
			return "", "", err
		}
		digest = string(b)
		if !validDigest(digest) {
			return "", "", fmt.Errorf("tag %s of %s: corrupt link %q", ref, name, b)
		}
	}
	mt, err := os.ReadFile(r.manifestLink(name, digest))
	if err != nil {
		return "", "", err
	}
	return digest, string(mt), nil
}

// checkReference answers 400 and returns false unless ref is a tag or a
// sha256 digest.
func checkReference(w http.ResponseWriter, ref string) bool {
	if strings.Contains(ref, ":") {
		if !validDigest(ref) {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest: only sha256:<64 hex> is supported")
			return false
		}
		return true
	}
	if !validTag(ref) {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", "invalid tag")
		return false
	}
	return true
}

func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	if !checkReference(w, ref) {
		return
	}
	digest, mediaType, err := r.resolve(name, ref)
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	body, err := os.ReadFile(r.blobPath(digest))
	if errors.Is(err, os.ErrNotExist) {
		writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
		return
	}
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Docker-Content-Digest", digest)
	h.Set("ETag", `"`+digest+`"`)
	http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(body))
}

type descriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	URLs      []string `json:"urls"`
}

// manifest holds the fields of image manifests and indexes the registry checks.
type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
}

func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, name, ref string) {
	if !checkReference(w, ref) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", "read manifest: "+err.Error())
		return
	}
	if len(body) > maxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("manifest larger than %d bytes", maxManifestSize))
		return
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if strings.Contains(ref, ":") && ref != digest {
		writeErrorDetail(w, http.StatusBadRequest, "DIGEST_INVALID",
			"provided digest did not match uploaded content", map[string]string{"expected": ref, "got": digest})
		return
	}
	// Checking the references and storing happen under one shared hold of
	// repoMu, so DeleteRepository cannot remove a referenced blob in between.
	r.repoMu.RLock()
	mediaType, code, err := r.checkManifest(name, req.Header.Get("Content-Type"), body)
	if err == nil {
		err = r.storeManifest(name, ref, digest, mediaType, body)
	}
	r.repoMu.RUnlock()
	if code != "" {
		writeError(w, http.StatusBadRequest, code, err.Error())
		return
	}
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	r.log.Info("manifest stored", "repository", name, "reference", ref, "digest", digest)
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+digest)
	h.Set("Docker-Content-Digest", digest)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// checkManifest returns the manifest's media type, or the error code and the
// reason it is refused: an unsupported type, malformed JSON, or a reference to
// a blob or manifest the repository does not hold.
func (r *Registry) checkManifest(name, contentType string, body []byte) (mediaType, code string, err error) {
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return "", "MANIFEST_INVALID", fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if contentType != "" {
		mediaType, _, err = mime.ParseMediaType(contentType)
		if err != nil {
			return "", "MANIFEST_INVALID", fmt.Errorf("invalid Content-Type %q", contentType)
		}
	} else {
		mediaType = m.MediaType
	}
	if m.MediaType != "" && m.MediaType != mediaType {
		return "", "MANIFEST_INVALID", fmt.Errorf("Content-Type %q does not match the manifest's mediaType %q", mediaType, m.MediaType)
	}
	if m.SchemaVersion != 2 {
		return "", "MANIFEST_INVALID", fmt.Errorf("unsupported schemaVersion %d", m.SchemaVersion)
	}
	switch mediaType {
	case mediaTypeDockerManifest, mediaTypeOCIManifest:
		if m.Config == nil {
			return "", "MANIFEST_INVALID", errors.New("image manifest has no config")
		}
		for _, d := range append([]descriptor{*m.Config}, m.Layers...) {
			if !validDigest(d.Digest) {
				return "", "MANIFEST_INVALID", fmt.Errorf("unsupported digest %q", d.Digest)
			}
			if len(d.URLs) > 0 {
				continue // a non-distributable layer is fetched from its URLs
			}
			if !r.blobLinked(name, d.Digest) {
				return "", "MANIFEST_BLOB_UNKNOWN", fmt.Errorf("blob %s unknown to repository", d.Digest)
			}
		}
	case mediaTypeDockerManifestList, mediaTypeOCIIndex:
		for _, d := range m.Manifests {
			if !validDigest(d.Digest) {
				return "", "MANIFEST_INVALID", fmt.Errorf("unsupported digest %q", d.Digest)
			}
			if _, err := os.Stat(r.manifestLink(name, d.Digest)); err != nil {
				return "", "MANIFEST_BLOB_UNKNOWN", fmt.Errorf("manifest %s unknown to repository", d.Digest)
			}
		}
	default:
		return "", "MANIFEST_INVALID", fmt.Errorf("unsupported manifest media type %q", mediaType)
	}
	return mediaType, "", nil
}

// storeManifest writes the manifest's bytes as a blob, links it to the
// repository with its media type and, if ref is a tag, points the tag at it,
// in that order, so a crash never leaves a tag without its manifest. The
// caller holds repoMu shared.
func (r *Registry) storeManifest(name, ref, digest, mediaType string, body []byte) error {
	if _, err := os.Stat(r.blobPath(digest)); err != nil {
		if err := r.writeFileAtomic(r.blobPath(digest), body); err != nil {
			return fmt.Errorf("store manifest %s: %w", digest, err)
		}
	}
	if err := r.writeFileAtomic(r.manifestLink(name, digest), []byte(mediaType)); err != nil {
		return fmt.Errorf("link manifest %s: %w", digest, err)
	}
	if ref != digest {
		if err := r.writeFileAtomic(r.tagPath(name, ref), []byte(digest)); err != nil {
			return fmt.Errorf("tag manifest %s as %s: %w", digest, ref, err)
		}
	}
	return nil
}

// listTags answers GET /v2/<name>/tags/list, in lexical order, paginated by
// ?n= and ?last= as the spec describes.
func (r *Registry) listTags(w http.ResponseWriter, req *http.Request, name string) {
	if !r.repoExists(name) {
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry")
		return
	}
	entries, err := os.ReadDir(filepath.Join(r.repoDir(name), "_tags"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		r.internalError(w, req, err)
		return
	}
	tags := []string{}
	for _, e := range entries {
		if validTag(e.Name()) {
			tags = append(tags, e.Name())
		}
	}
	slices.Sort(tags)
	q := req.URL.Query()
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(tags, last)
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", "invalid n")
			return
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				next := url.Values{"n": {ns}, "last": {tags[n-1]}}
				w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, name, next.Encode()))
			}
		}
	}
	body, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{name, tags})
	if err != nil {
		r.internalError(w, req, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
