package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"

	"paas/internal/paas"
)

func TestDockerignore(t *testing.T) {
	rules, err := parseDockerignore(strings.NewReader(`
# comment
*.log
/tmp
node_modules
**/*.bak
docs/*.md
!docs/README.md
secret?.txt
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{"app.log", true},
		{"sub/app.log", false}, // * does not cross directories
		{"tmp", true},
		{"tmp/x/y", true},
		{"tmpfile", false},
		{"node_modules/a/b.js", true},
		{"a/node_modules", false},
		{"x.bak", true},
		{"a/b/c/x.bak", true},
		{"docs/guide.md", true},
		{"docs/README.md", false},
		{"secret1.txt", true},
		{"secret12.txt", false},
		{"main.go", false},
	}
	for _, tt := range tests {
		if got := rules.excludes(tt.path); got != tt.want {
			t.Errorf("excludes(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestWriteContext(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	mustWrite(t, outside, "do not ship")
	mustWrite(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\n")
	mustWrite(t, filepath.Join(dir, ".dockerignore"), "Dockerfile\n*.log\nbuild\n")
	mustWrite(t, filepath.Join(dir, "main.go"), "package main\n")
	mustWrite(t, filepath.Join(dir, "debug.log"), "noise")
	mustWrite(t, filepath.Join(dir, "build", "out.bin"), "noise")
	mustWrite(t, filepath.Join(dir, "src", "a.txt"), "a")
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := writeContext(&buf, dir, DockerfileName); err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = hdr
		b, _ := io.ReadAll(tr)
		contents[hdr.Name] = string(b)
	}
	names := make([]string, 0, len(got))
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{".dockerignore", "Dockerfile", "escape", "main.go", "src/", "src/a.txt"}
	if !slices.Equal(names, want) {
		t.Fatalf("context holds %q, want %q", names, want)
	}
	if h := got["escape"]; h.Typeflag != tar.TypeSymlink || h.Linkname != outside {
		t.Errorf("escape: type %c link %q, want a symlink to %s", h.Typeflag, h.Linkname, outside)
	}
	for n, c := range contents {
		if strings.Contains(c, "do not ship") {
			t.Errorf("%s carries the content of a file outside the context", n)
		}
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeDocker answers ImageBuild with a stream the test writes as it goes.
type fakeDocker struct {
	build io.ReadCloser
	push  io.ReadCloser
}

func (f *fakeDocker) ImageBuild(ctx context.Context, r io.Reader, _ build.ImageBuildOptions) (build.ImageBuildResponse, error) {
	go io.Copy(io.Discard, r)
	return build.ImageBuildResponse{Body: f.build}, nil
}

func (f *fakeDocker) ImagePush(context.Context, string, image.PushOptions) (io.ReadCloser, error) {
	return f.push, nil
}

// lineRecorder signals each write.
type lineRecorder struct {
	bytes.Buffer
	wrote chan string
}

func (l *lineRecorder) Write(p []byte) (int, error) {
	l.wrote <- string(p)
	return l.Buffer.Write(p)
}

func TestBuildStreamsLinesAsTheyCome(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\n")
	pr, pw := io.Pipe()
	push := io.NopCloser(strings.NewReader(`{"status":"The push refers to repository [r/app]"}
{"status":"Preparing","progressDetail":{},"id":"abc"}
{"status":"Pushing","progressDetail":{"current":10,"total":100},"id":"abc"}
{"status":"Pushed","progressDetail":{},"id":"abc"}
{"status":"v1: digest: sha256:1111111111111111111111111111111111111111111111111111111111111111 size: 528"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","Size":528}}
`))
	b := NewDockerfile(&fakeDocker{build: pr, push: push}, paas.ImageRegistry{Prefix: "r"}, nil)
	out := &lineRecorder{wrote: make(chan string, 100)}
	done := make(chan error, 1)
	go func() {
		_, err := b.Build(context.Background(), Input{App: "app", Dir: dir, Tag: "v1", Out: out})
		done <- err
	}()
	if got := <-out.wrote; got != "-----> Building app from Dockerfile\n" {
		t.Fatalf("first line %q", got)
	}
	// Half a line shows nothing; its end shows it at once, before the
	// stream ends.
	io.WriteString(pw, `{"stream":"Step 1/1 : FROM scr"}`)
	select {
	case got := <-out.wrote:
		t.Fatalf("partial line written: %q", got)
	case <-time.After(100 * time.Millisecond):
	}
	io.WriteString(pw, `{"stream":"atch\n"}`)
	select {
	case got := <-out.wrote:
		if got != "       Step 1/1 : FROM scratch\n" {
			t.Fatalf("line %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a complete line was not written while the build runs")
	}
	io.WriteString(pw, `{"aux":{"ID":"sha256:2222"}}`+"\n"+`{"stream":"Successfully built 2222\n"}`)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(out.wrote)
	var rest strings.Builder
	for s := range out.wrote {
		rest.WriteString(s)
	}
	want := "       Successfully built 2222\n" +
		"-----> Pushing image r/app:v1\n" +
		"       The push refers to repository [r/app]\n" +
		"       abc: Pushed\n" +
		"       v1: digest: sha256:1111111111111111111111111111111111111111111111111111111111111111 size: 528\n"
	if rest.String() != want {
		t.Errorf("rest of output:\n%s\nwant:\n%s", rest.String(), want)
	}
}

func TestBuildStreamError(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "Dockerfile"), "FROM scratch\nRUN false\n")
	stream := `{"stream":"Step 2/2 : RUN false\n"}
{"errorDetail":{"code":1,"message":"The command '/bin/sh -c false' returned a non-zero code: 1"},"error":"The command '/bin/sh -c false' returned a non-zero code: 1"}
`
	b := NewDockerfile(&fakeDocker{build: io.NopCloser(strings.NewReader(stream))}, paas.ImageRegistry{Prefix: "r"}, nil)
	var out bytes.Buffer
	_, err := b.Build(context.Background(), Input{App: "app", Dir: dir, Tag: "v1", Out: &out})
	if err == nil || !strings.Contains(err.Error(), "returned a non-zero code: 1") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "Step 2/2 : RUN false") {
		t.Errorf("output before the error lost:\n%s", out.String())
	}
}
