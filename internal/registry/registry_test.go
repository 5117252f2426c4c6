package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testRegistry is a Registry behind a real HTTP server.
type testRegistry struct {
	*Registry
	dir string
	url string
}

func newTestRegistry(t *testing.T, dir string) *testRegistry {
	t.Helper()
	reg, err := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return &testRegistry{Registry: reg, dir: dir, url: srv.URL}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorCode returns the code of the first error in a registry error body.
func (r response) errorCode() string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// do sends a request; path may be relative to the registry (a Location header)
// and headers come in name, value pairs.
func (tr *testRegistry) do(t *testing.T, method, path string, body []byte, headers ...string) response {
	t.Helper()
	resp, err := tr.try(method, path, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// try is do for goroutines other than the test's.
func (tr *testRegistry) try(method, path string, body []byte, headers ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, tr.url+path, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (tr *testRegistry) expect(t *testing.T, want int, method, path string, body []byte, headers ...string) response {
	t.Helper()
	resp := tr.do(t, method, path, body, headers...)
	if resp.status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.status, want, resp.body)
	}
	return resp
}

func (tr *testRegistry) pushBlob(t *testing.T, name string, data []byte) string {
	t.Helper()
	d := digestOf(data)
	tr.expect(t, http.StatusCreated, "POST", "/v2/"+name+"/blobs/uploads/?digest="+d, data)
	return d
}

// pushImage pushes a config and one layer and returns a schema2 manifest
// referencing them.
func (tr *testRegistry) pushImage(t *testing.T, name, content string) []byte {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":"` + content + `"}`)
	layer := []byte("layer " + content)
	cd, ld := tr.pushBlob(t, name, config), tr.pushBlob(t, name, layer)
	return []byte(fmt.Sprintf(`{
   "schemaVersion": 2,
   "mediaType": %q,
   "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": %d, "digest": %q},
   "layers": [ {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": %d, "digest": %q} ]
}`, mediaTypeDockerManifest, len(config), cd, len(layer), ld))
}

func TestBaseEndpoint(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	for _, m := range []string{"GET", "HEAD"} {
		resp := tr.expect(t, http.StatusOK, m, "/v2/", nil)
		if got := resp.header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
			t.Errorf("%s /v2/: Docker-Distribution-API-Version %q", m, got)
		}
	}
	resp := tr.expect(t, http.StatusNotFound, "GET", "/v2/_catalog", nil)
	if resp.errorCode() == "" {
		t.Errorf("error body without code: %s", resp.body)
	}
}

func TestChunkedUpload(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	data := []byte("0123456789abcdefghij")
	d := digestOf(data)

	resp := tr.expect(t, http.StatusAccepted, "POST", "/v2/test/img/blobs/uploads/", nil)
	loc := resp.header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/test/img/blobs/uploads/") || resp.header.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("start: Location %q, Docker-Upload-UUID %q", loc, resp.header.Get("Docker-Upload-UUID"))
	}
	if got := resp.header.Get("Range"); got != "0-0" {
		t.Errorf("start: Range %q, want 0-0", got)
	}

	resp = tr.expect(t, http.StatusAccepted, "PATCH", loc, data[:5], "Content-Range", "0-4", "Content-Type", "application/octet-stream")
	if got := resp.header.Get("Range"); got != "0-4" {
		t.Errorf("first chunk: Range %q, want 0-4", got)
	}
	loc = resp.header.Get("Location")

	resp = tr.expect(t, http.StatusNoContent, "GET", loc, nil)
	if got := resp.header.Get("Range"); got != "0-4" {
		t.Errorf("status: Range %q, want 0-4", got)
	}

	// A chunk that does not continue where the upload ends is refused and
	// changes nothing.
	resp = tr.expect(t, http.StatusRequestedRangeNotSatisfiable, "PATCH", loc, data[:5], "Content-Range", "0-4")
	if got := resp.header.Get("Range"); got != "0-4" {
		t.Errorf("out-of-order chunk: Range %q, want 0-4", got)
	}

	// A streamed chunk without Content-Range, as docker push sends them.
	resp = tr.expect(t, http.StatusAccepted, "PATCH", loc, data[5:15])
	if got := resp.header.Get("Range"); got != "0-14" {
		t.Errorf("second chunk: Range %q, want 0-14", got)
	}

	// The last chunk comes with the PUT.
	resp = tr.expect(t, http.StatusCreated, "PUT", resp.header.Get("Location")+"?digest="+d, data[15:])
	if got := resp.header.Get("Docker-Content-Digest"); got != d {
		t.Errorf("finish: Docker-Content-Digest %q, want %q", got, d)
	}
	if got := resp.header.Get("Location"); got != "/v2/test/img/blobs/"+d {
		t.Errorf("finish: Location %q", got)
	}
	tr.expect(t, http.StatusNotFound, "GET", loc, nil)

	resp = tr.expect(t, http.StatusOK, "HEAD", "/v2/test/img/blobs/"+d, nil)
	if resp.header.Get("Content-Length") != fmt.Sprint(len(data)) || resp.header.Get("Docker-Content-Digest") != d {
		t.Errorf("HEAD blob: Content-Length %q, Docker-Content-Digest %q", resp.header.Get("Content-Length"), resp.header.Get("Docker-Content-Digest"))
	}
	resp = tr.expect(t, http.StatusOK, "GET", "/v2/test/img/blobs/"+d, nil)
	if !bytes.Equal(resp.body, data) {
		t.Errorf("GET blob: %q, want %q", resp.body, data)
	}
	resp = tr.expect(t, http.StatusPartialContent, "GET", "/v2/test/img/blobs/"+d, nil, "Range", "bytes=10-")
	if !bytes.Equal(resp.body, data[10:]) {
		t.Errorf("GET blob range: %q, want %q", resp.body, data[10:])
	}
	assertDirEmpty(t, filepath.Join(tr.dir, "uploads"))
}

func TestMonolithicUpload(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	for _, data := range [][]byte{[]byte("hello blob"), {}} {
		d := digestOf(data)
		resp := tr.expect(t, http.StatusCreated, "POST", "/v2/mono/blobs/uploads/?digest="+d, data)
		if resp.header.Get("Docker-Content-Digest") != d || resp.header.Get("Location") != "/v2/mono/blobs/"+d {
			t.Errorf("monolithic %q: headers %v", data, resp.header)
		}
		resp = tr.expect(t, http.StatusOK, "GET", "/v2/mono/blobs/"+d, nil)
		if !bytes.Equal(resp.body, data) {
			t.Errorf("GET blob: %q, want %q", resp.body, data)
		}
		// Blobs are served only through a repository that holds them.
		resp = tr.expect(t, http.StatusNotFound, "HEAD", "/v2/other/blobs/"+d, nil)
		resp = tr.expect(t, http.StatusNotFound, "GET", "/v2/other/blobs/"+d, nil)
		if resp.errorCode() != "BLOB_UNKNOWN" {
			t.Errorf("GET blob of other repository: code %q", resp.errorCode())
		}
	}
	assertDirEmpty(t, filepath.Join(tr.dir, "uploads"))
}

func TestUploadWrongDigest(t *testing.T) {
	data := []byte("the real content")
	wrong := digestOf([]byte("something else"))
	tests := []struct {
		name   string
		digest string
		chunk  bool
		code   string
	}{
		{"monolithic mismatch", wrong, false, "DIGEST_INVALID"},
		{"chunked mismatch", wrong, true, "DIGEST_INVALID"},
		{"monolithic sha512", "sha512:" + strings.Repeat("ab", 64), false, "DIGEST_INVALID"},
		{"chunked sha512", "sha512:" + strings.Repeat("ab", 64), true, "DIGEST_INVALID"},
		{"uppercase hex", "sha256:" + strings.ToUpper(digestOf(data)[7:]), true, "DIGEST_INVALID"},
		{"path in digest", "sha256:../../../etc", false, "DIGEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestRegistry(t, t.TempDir())
			var resp response
			if tt.chunk {
				loc := tr.expect(t, http.StatusAccepted, "POST", "/v2/wrong/blobs/uploads/", nil).header.Get("Location")
				loc = tr.expect(t, http.StatusAccepted, "PATCH", loc, data).header.Get("Location")
				resp = tr.expect(t, http.StatusBadRequest, "PUT", loc+"?digest="+tt.digest, nil)
			} else {
				resp = tr.expect(t, http.StatusBadRequest, "POST", "/v2/wrong/blobs/uploads/?digest="+tt.digest, data)
			}
			if resp.errorCode() != tt.code {
				t.Errorf("code %q, want %q; body %s", resp.errorCode(), tt.code, resp.body)
			}
			tr.expect(t, http.StatusNotFound, "HEAD", "/v2/wrong/blobs/"+digestOf(data), nil)
			assertDirEmpty(t, filepath.Join(tr.dir, "blobs", "sha256"))
			assertDirEmpty(t, filepath.Join(tr.dir, "tmp"))
		})
	}
}

func TestCrossRepositoryMount(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	d := tr.pushBlob(t, "apps/one", []byte("shared layer"))

	resp := tr.expect(t, http.StatusCreated, "POST", "/v2/apps/two/blobs/uploads/?mount="+d+"&from=apps/one", nil)
	if resp.header.Get("Docker-Content-Digest") != d || resp.header.Get("Location") != "/v2/apps/two/blobs/"+d {
		t.Errorf("mount: headers %v", resp.header)
	}
	tr.expect(t, http.StatusOK, "HEAD", "/v2/apps/two/blobs/"+d, nil)

	// A blob the source repository does not hold cannot be mounted: the
	// registry starts an ordinary upload instead.
	for _, from := range []string{"apps/three", "../apps/one"} {
		resp = tr.expect(t, http.StatusAccepted, "POST", "/v2/apps/three/blobs/uploads/?mount="+d+"&from="+from, nil)
		if !strings.HasPrefix(resp.header.Get("Location"), "/v2/apps/three/blobs/uploads/") {
			t.Errorf("mount from %s: Location %q", from, resp.header.Get("Location"))
		}
		tr.expect(t, http.StatusNotFound, "HEAD", "/v2/apps/three/blobs/"+d, nil)
	}
}

func TestCancelUpload(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	loc := tr.expect(t, http.StatusAccepted, "POST", "/v2/cancel/me/blobs/uploads/", nil).header.Get("Location")
	loc = tr.expect(t, http.StatusAccepted, "PATCH", loc, []byte("partial")).header.Get("Location")

	// The upload belongs to its repository.
	other := strings.Replace(loc, "/cancel/me/", "/cancel/other/", 1)
	tr.expect(t, http.StatusNotFound, "GET", other, nil)
	tr.expect(t, http.StatusNotFound, "DELETE", other, nil)

	tr.expect(t, http.StatusNoContent, "DELETE", loc, nil)
	resp := tr.expect(t, http.StatusNotFound, "GET", loc, nil)
	if resp.errorCode() != "BLOB_UPLOAD_UNKNOWN" {
		t.Errorf("status after cancel: code %q", resp.errorCode())
	}
	tr.expect(t, http.StatusNotFound, "PATCH", loc, []byte("more"))
	tr.expect(t, http.StatusNotFound, "PUT", loc+"?digest="+digestOf([]byte("partial")), nil)
	tr.expect(t, http.StatusNotFound, "GET", "/v2/cancel/me/blobs/uploads/not-an-id", nil)
	assertDirEmpty(t, filepath.Join(tr.dir, "uploads"))
}

func TestManifestRoundTrip(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	m := tr.pushImage(t, "test/img", "one")
	md := digestOf(m)

	resp := tr.expect(t, http.StatusCreated, "PUT", "/v2/test/img/manifests/1", m, "Content-Type", mediaTypeDockerManifest)
	if resp.header.Get("Docker-Content-Digest") != md || resp.header.Get("Location") != "/v2/test/img/manifests/"+md {
		t.Errorf("PUT manifest: headers %v", resp.header)
	}
	for _, ref := range []string{"1", md} {
		for _, method := range []string{"GET", "HEAD"} {
			resp := tr.expect(t, http.StatusOK, method, "/v2/test/img/manifests/"+ref, nil, "Accept", mediaTypeDockerManifest)
			if got := resp.header.Get("Content-Type"); got != mediaTypeDockerManifest {
				t.Errorf("%s %s: Content-Type %q", method, ref, got)
			}
			if got := resp.header.Get("Docker-Content-Digest"); got != md {
				t.Errorf("%s %s: Docker-Content-Digest %q, want %q", method, ref, got, md)
			}
			if got := resp.header.Get("Content-Length"); got != fmt.Sprint(len(m)) {
				t.Errorf("%s %s: Content-Length %q, want %d", method, ref, got, len(m))
			}
			if method == "GET" && !bytes.Equal(resp.body, m) {
				t.Errorf("GET %s: body changed:\n%s\nwant\n%s", ref, resp.body, m)
			}
		}
	}

	// An OCI index pushed by digest keeps its own media type.
	index := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
		mediaTypeOCIIndex, mediaTypeDockerManifest, md, len(m)))
	id := digestOf(index)
	tr.expect(t, http.StatusCreated, "PUT", "/v2/test/img/manifests/"+id, index, "Content-Type", mediaTypeOCIIndex)
	resp = tr.expect(t, http.StatusOK, "GET", "/v2/test/img/manifests/"+id, nil)
	if resp.header.Get("Content-Type") != mediaTypeOCIIndex || !bytes.Equal(resp.body, index) {
		t.Errorf("GET index: Content-Type %q body %s", resp.header.Get("Content-Type"), resp.body)
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/other/manifests/"+md, nil)

	unknown := digestOf([]byte("nothing"))
	tests := []struct {
		name        string
		ref         string
		contentType string
		body        []byte
		status      int
		code        string
	}{
		{"digest mismatch", unknown, mediaTypeDockerManifest, m, http.StatusBadRequest, "DIGEST_INVALID"},
		{"layer of another repo", "2", mediaTypeDockerManifest, tr.pushImage(t, "elsewhere", "two"), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
		{"index with unknown child", "2", mediaTypeOCIIndex,
			[]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"` + mediaTypeOCIManifest + `","digest":"` + unknown + `","size":1}]}`),
			http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN"},
		{"unsupported media type", "2", "application/vnd.docker.distribution.manifest.v1+prettyjws", m, http.StatusBadRequest, "MANIFEST_INVALID"},
		{"media type mismatch", "2", mediaTypeOCIManifest, m, http.StatusBadRequest, "MANIFEST_INVALID"},
		{"not JSON", "2", mediaTypeDockerManifest, []byte("{"), http.StatusBadRequest, "MANIFEST_INVALID"},
		{"schema version 1", "2", mediaTypeDockerManifest, bytes.Replace(m, []byte(`"schemaVersion": 2`), []byte(`"schemaVersion": 1`), 1), http.StatusBadRequest, "MANIFEST_INVALID"},
		{"invalid tag", ".hidden", mediaTypeDockerManifest, m, http.StatusBadRequest, "TAG_INVALID"},
		{"tag too long", strings.Repeat("t", 129), mediaTypeDockerManifest, m, http.StatusBadRequest, "TAG_INVALID"},
		{"sha512 reference", "sha512:" + strings.Repeat("ab", 64), mediaTypeDockerManifest, m, http.StatusBadRequest, "DIGEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tr.expect(t, tt.status, "PUT", "/v2/test/img/manifests/"+tt.ref, tt.body, "Content-Type", tt.contentType)
			if resp.errorCode() != tt.code {
				t.Errorf("code %q, want %q; body %s", resp.errorCode(), tt.code, resp.body)
			}
		})
	}
	resp = tr.expect(t, http.StatusNotFound, "GET", "/v2/test/img/manifests/2", nil)
	if resp.errorCode() != "MANIFEST_UNKNOWN" {
		t.Errorf("GET unknown tag: code %q", resp.errorCode())
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/test/img/manifests/"+unknown, nil)
}

func TestManifestUnknownLayerRejected(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	config := tr.pushBlob(t, "img", []byte("{}"))
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":3}]}`,
		mediaTypeOCIManifest, config, digestOf([]byte("not pushed")))
	resp := tr.expect(t, http.StatusBadRequest, "PUT", "/v2/img/manifests/latest", []byte(m), "Content-Type", mediaTypeOCIManifest)
	if resp.errorCode() != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("code %q, want MANIFEST_BLOB_UNKNOWN", resp.errorCode())
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/img/manifests/latest", nil)
}

func TestTagsList(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	m1 := tr.pushImage(t, "tags/app", "one")
	m2 := tr.pushImage(t, "tags/app", "two")
	for _, tag := range []string{"v2", "latest", "v1", "V_3.0-rc1"} {
		tr.expect(t, http.StatusCreated, "PUT", "/v2/tags/app/manifests/"+tag, m1, "Content-Type", mediaTypeDockerManifest)
	}
	// Pushing another manifest under a tag moves the tag.
	tr.expect(t, http.StatusCreated, "PUT", "/v2/tags/app/manifests/latest", m2, "Content-Type", mediaTypeDockerManifest)
	resp := tr.expect(t, http.StatusOK, "GET", "/v2/tags/app/manifests/latest", nil)
	if !bytes.Equal(resp.body, m2) {
		t.Errorf("latest was not moved")
	}
	// Pushing by digest adds no tag.
	tr.expect(t, http.StatusCreated, "PUT", "/v2/tags/app/manifests/"+digestOf(m2), m2, "Content-Type", mediaTypeDockerManifest)

	list := func(query string) ([]string, string) {
		resp := tr.expect(t, http.StatusOK, "GET", "/v2/tags/app/tags/list"+query, nil)
		var body struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatalf("tags list %s: %v", resp.body, err)
		}
		if body.Name != "tags/app" {
			t.Errorf("tags list: name %q", body.Name)
		}
		return body.Tags, resp.header.Get("Link")
	}
	if tags, _ := list(""); !slices.Equal(tags, []string{"V_3.0-rc1", "latest", "v1", "v2"}) {
		t.Errorf("tags %q", tags)
	}
	tags, link := list("?n=2")
	if !slices.Equal(tags, []string{"V_3.0-rc1", "latest"}) || !strings.Contains(link, "last=latest") || !strings.Contains(link, `rel="next"`) {
		t.Errorf("first page: tags %q, Link %q", tags, link)
	}
	if tags, link := list("?n=2&last=latest"); !slices.Equal(tags, []string{"v1", "v2"}) || link != "" {
		t.Errorf("second page: tags %q, Link %q", tags, link)
	}

	resp = tr.expect(t, http.StatusNotFound, "GET", "/v2/tags/unknown/tags/list", nil)
	if resp.errorCode() != "NAME_UNKNOWN" {
		t.Errorf("unknown repository: code %q", resp.errorCode())
	}
	// "tags" is the parent directory of "tags/app", not a repository.
	tr.expect(t, http.StatusNotFound, "GET", "/v2/tags/tags/list", nil)
}

// TestInvalidNames sends requests whose repository name, reference or digest
// is invalid, straight to the handler so no client cleans the path, and checks
// that they are refused and wrote nothing.
func TestInvalidNames(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "registry")
	reg, err := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("x")
	bd := digestOf(blob)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + mediaTypeOCIIndex + `","manifests":[]}`)
	names := []string{
		"../x", "A", "a//b", "a/", "/a", "-a", "a-", "a/../../b", "a/./b", "..", ".", "a..b", "a___b",
		"%2e%2e/x", "a%2f..%2f..%2fb", "a/%2e%2e/%2e%2e/b", "a%00b", "a%20b", "%C3%A4",
		strings.Repeat("a", 256), strings.Repeat("a/", 128) + "a",
	}
	var reqs []*http.Request
	for _, name := range names {
		for _, r := range []struct{ method, path string }{
			{"PUT", "/v2/" + name + "/manifests/latest"},
			{"GET", "/v2/" + name + "/manifests/latest"},
			{"POST", "/v2/" + name + "/blobs/uploads/?digest=" + bd},
			{"POST", "/v2/" + name + "/blobs/uploads/"},
			{"GET", "/v2/" + name + "/blobs/" + bd},
			{"GET", "/v2/" + name + "/tags/list"},
		} {
			var body io.Reader
			if r.method != "GET" {
				body = bytes.NewReader(manifest)
			}
			reqs = append(reqs, httptest.NewRequest(r.method, r.path, body))
		}
	}
	for _, ref := range []string{"..", ".hidden", "a%2f..%2fb", "sha256:..%2f..%2fx", "sha256:" + strings.Repeat("A", 64), "-x"} {
		reqs = append(reqs,
			httptest.NewRequest("PUT", "/v2/ok/manifests/"+ref, bytes.NewReader(manifest)),
			httptest.NewRequest("GET", "/v2/ok/blobs/"+ref, nil),
			httptest.NewRequest("PUT", "/v2/ok/blobs/uploads/"+ref+"?digest="+bd, bytes.NewReader(blob)),
		)
	}
	for _, req := range reqs {
		req.Header.Set("Content-Type", mediaTypeOCIIndex)
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 400 or 404; body %s", req.Method, req.URL.Path, rec.Code, rec.Body)
		}
		if !strings.Contains(rec.Body.String(), `"code":`) {
			t.Errorf("%s %s: body without error code: %s", req.Method, req.URL.Path, rec.Body)
		}
	}

	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "registry" {
		t.Errorf("files next to the registry directory: %v", entries)
	}
	for _, d := range []string{"repositories", "blobs/sha256", "tmp", "uploads"} {
		assertDirEmpty(t, filepath.Join(dir, d))
	}
}

// FuzzRequestPath checks that no request path, however odd, makes the
// registry write outside its directory.
func FuzzRequestPath(f *testing.F) {
	for _, seed := range []string{
		"/v2/a/manifests/latest", "/v2/../../x/manifests/latest", "/v2/a/blobs/uploads/",
		"/v2/a/../../b/blobs/uploads/?digest=sha256:00", "/v2/a/tags/list", "/v2//blobs/uploads/",
	} {
		f.Add("PUT", seed)
		f.Add("POST", seed)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		u, err := url.Parse(path)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		parent := t.TempDir()
		reg, err := New(filepath.Join(parent, "registry"), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		req := &http.Request{Method: method, URL: u, Header: http.Header{"Content-Type": {mediaTypeOCIIndex}},
			Body: io.NopCloser(strings.NewReader(`{"schemaVersion":2,"manifests":[]}`))}
		reg.ServeHTTP(httptest.NewRecorder(), req)
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("%s %q wrote next to the registry directory: %v", method, path, entries)
		}
	})
}

func TestParseRoute(t *testing.T) {
	tests := []struct {
		path string
		want route
		ok   bool
	}{
		{"a/tags/list", route{kind: routeTags, name: "a"}, true},
		{"a/b/c/tags/list", route{kind: routeTags, name: "a/b/c"}, true},
		{"a/manifests/latest", route{kind: routeManifest, name: "a", ref: "latest"}, true},
		{"tags/manifests/list", route{kind: routeManifest, name: "tags", ref: "list"}, true},
		{"a/manifests/manifests/x", route{kind: routeManifest, name: "a/manifests", ref: "x"}, true},
		{"a/blobs/sha256:00", route{kind: routeBlob, name: "a", ref: "sha256:00"}, true},
		{"a/blobs/uploads/", route{kind: routeUploadStart, name: "a"}, true},
		{"a/blobs/uploads", route{kind: routeUploadStart, name: "a"}, true},
		{"a/blobs/uploads/id", route{kind: routeUpload, name: "a", ref: "id"}, true},
		{"blobs/blobs/uploads/id", route{kind: routeUpload, name: "blobs", ref: "id"}, true},
		{"a/b", route{}, false},
		{"a/tags/other", route{}, false},
		{"", route{}, false},
	}
	for _, tt := range tests {
		got, ok := parseRoute(tt.path)
		if ok != tt.ok || got != tt.want {
			t.Errorf("parseRoute(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	tr := newTestRegistry(t, dir)
	m := tr.pushImage(t, "restart/app", "persist")
	md := digestOf(m)
	tr.expect(t, http.StatusCreated, "PUT", "/v2/restart/app/manifests/v1", m, "Content-Type", mediaTypeDockerManifest)
	blob := []byte("chunked before restart")
	bd := tr.pushBlob(t, "restart/app", blob)
	pending := tr.expect(t, http.StatusAccepted, "POST", "/v2/restart/app/blobs/uploads/", nil).header.Get("Location")
	tr.expect(t, http.StatusAccepted, "PATCH", pending, []byte("half"))

	again := newTestRegistry(t, dir)
	resp := again.expect(t, http.StatusOK, "GET", "/v2/restart/app/manifests/v1", nil)
	if !bytes.Equal(resp.body, m) || resp.header.Get("Content-Type") != mediaTypeDockerManifest || resp.header.Get("Docker-Content-Digest") != md {
		t.Errorf("manifest after restart: %v %s", resp.header, resp.body)
	}
	again.expect(t, http.StatusOK, "HEAD", "/v2/restart/app/manifests/"+md, nil)
	resp = again.expect(t, http.StatusOK, "GET", "/v2/restart/app/blobs/"+bd, nil)
	if !bytes.Equal(resp.body, blob) {
		t.Errorf("blob after restart: %q", resp.body)
	}
	resp = again.expect(t, http.StatusOK, "GET", "/v2/restart/app/tags/list", nil)
	if string(resp.body) != `{"name":"restart/app","tags":["v1"]}` {
		t.Errorf("tags after restart: %s", resp.body)
	}
	// Uploads in progress do not survive; the client starts over.
	again.expect(t, http.StatusNotFound, "GET", pending, nil)
	assertDirEmpty(t, filepath.Join(dir, "uploads"))
}

func TestDeleteRepository(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	shared := []byte("shared base layer")
	sd := tr.pushBlob(t, "apps/a", shared)
	tr.pushBlob(t, "apps/a/worker", shared)
	m := tr.pushImage(t, "apps/a", "only in a")
	tr.expect(t, http.StatusCreated, "PUT", "/v2/apps/a/manifests/1", m, "Content-Type", mediaTypeDockerManifest)
	mw := tr.pushImage(t, "apps/a/worker", "worker")
	tr.expect(t, http.StatusCreated, "PUT", "/v2/apps/a/worker/manifests/1", mw, "Content-Type", mediaTypeDockerManifest)
	pending := tr.expect(t, http.StatusAccepted, "POST", "/v2/apps/a/blobs/uploads/", nil).header.Get("Location")
	blobsBefore := countFiles(t, filepath.Join(tr.dir, "blobs", "sha256"))

	if err := tr.DeleteRepository("apps/a"); err != nil {
		t.Fatalf("DeleteRepository: %v", err)
	}
	tr.expect(t, http.StatusNotFound, "GET", "/v2/apps/a/manifests/1", nil)
	tr.expect(t, http.StatusNotFound, "GET", "/v2/apps/a/manifests/"+digestOf(m), nil)
	tr.expect(t, http.StatusNotFound, "GET", "/v2/apps/a/tags/list", nil)
	tr.expect(t, http.StatusNotFound, "HEAD", "/v2/apps/a/blobs/"+sd, nil)
	tr.expect(t, http.StatusNotFound, "GET", pending, nil)

	// The nested repository and the blob it shares are untouched.
	resp := tr.expect(t, http.StatusOK, "GET", "/v2/apps/a/worker/manifests/1", nil)
	if !bytes.Equal(resp.body, mw) {
		t.Errorf("worker manifest changed")
	}
	tr.expect(t, http.StatusOK, "GET", "/v2/apps/a/worker/blobs/"+sd, nil)
	// a's manifest, config and layer are gone from disk.
	if got := countFiles(t, filepath.Join(tr.dir, "blobs", "sha256")); got != blobsBefore-3 {
		t.Errorf("blobs on disk: %d, want %d", got, blobsBefore-3)
	}

	if err := tr.DeleteRepository("apps/a/worker"); err != nil {
		t.Fatalf("DeleteRepository: %v", err)
	}
	if err := tr.DeleteRepository("apps/never"); err != nil {
		t.Errorf("DeleteRepository of a missing repository: %v", err)
	}
	for _, name := range []string{"../apps", "", "Apps"} {
		if err := tr.DeleteRepository(name); err == nil {
			t.Errorf("DeleteRepository(%q) succeeded", name)
		}
	}
	assertDirEmpty(t, filepath.Join(tr.dir, "repositories"))
	assertDirEmpty(t, filepath.Join(tr.dir, "blobs", "sha256"))
}

// TestConcurrentPushes pushes the same and different blobs, manifests and
// tags from many goroutines at once; run it with -race.
func TestConcurrentPushes(t *testing.T) {
	tr := newTestRegistry(t, t.TempDir())
	shared := []byte("the same layer pushed by everyone")
	// Each image's config and layer are pushed first, from the test goroutine.
	manifests := make([][]byte, 8)
	for i := range manifests {
		manifests[i] = tr.pushImage(t, fmt.Sprintf("conc/app%d", i%2), fmt.Sprint(i))
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("conc/app%d", i%2)
			steps := []struct {
				method, path string
				body         []byte
				want         int
			}{
				{"POST", "/v2/" + name + "/blobs/uploads/", nil, http.StatusAccepted},
				{"PATCH", "", shared[:10], http.StatusAccepted},
				{"PUT", "?digest=" + digestOf(shared), shared[10:], http.StatusCreated},
				{"PUT", "/v2/" + name + "/manifests/latest", manifests[i], http.StatusCreated},
				{"PUT", "/v2/" + name + "/manifests/" + fmt.Sprint(i), manifests[i], http.StatusCreated},
				{"GET", "/v2/" + name + "/manifests/latest", nil, http.StatusOK},
			}
			loc := ""
			for _, st := range steps {
				path := st.path
				if !strings.HasPrefix(path, "/") {
					path = loc + path
				}
				resp, err := tr.try(st.method, path, st.body, "Content-Type", mediaTypeDockerManifest)
				if err != nil || resp.status != st.want {
					t.Errorf("%s %s: status %d, want %d, err %v; body %s", st.method, path, resp.status, st.want, err, resp.body)
					return
				}
				loc = resp.header.Get("Location")
			}
		})
	}
	wg.Wait()
	for _, name := range []string{"conc/app0", "conc/app1"} {
		resp := tr.expect(t, http.StatusOK, "GET", "/v2/"+name+"/blobs/"+digestOf(shared), nil)
		if !bytes.Equal(resp.body, shared) {
			t.Errorf("%s: shared blob corrupted: %q", name, resp.body)
		}
	}
	assertDirEmpty(t, filepath.Join(tr.dir, "uploads"))
	assertDirEmpty(t, filepath.Join(tr.dir, "tmp"))
}

func assertDirEmpty(t *testing.T, dir string) {
	t.Helper()
	if n := countFiles(t, dir); n != 0 {
		t.Errorf("%s holds %d files, want none", dir, n)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
