package deploy

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry of an archive to build: a file, a dir, or a link (Link set).
type archEntry struct {
	name, body, link string
	dir, hard        bool
}

func makeTar(t *testing.T, entries []archEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.hard:
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.link, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func makeZip(t *testing.T, entries []archEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		switch {
		case e.dir:
			h.Name = strings.TrimSuffix(h.Name, "/") + "/"
			h.SetMode(os.ModeDir | 0o755)
		case e.link != "":
			h.SetMode(os.ModeSymlink | 0o777)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if e.link != "" {
			w.Write([]byte(e.link))
		} else if !e.dir {
			w.Write([]byte(e.body))
		}
	}
	zw.Close()
	return buf.Bytes()
}

func gz(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func TestUnpackArchive(t *testing.T) {
	app := []archEntry{{name: "./", dir: true}, {name: "Dockerfile", body: "FROM scratch\n"}, {name: "src/", dir: true}, {name: "src/main.go", body: "package main\n"}, {name: "src/link", link: "main.go"}}
	lim := ArchiveLimits{MaxFiles: 100, MaxBytes: 1 << 20}
	tests := []struct {
		name    string
		kind    string
		data    []byte
		lim     ArchiveLimits
		wantErr string
	}{
		{name: "tar", kind: "tar", data: makeTar(t, app), lim: lim},
		{name: "tar.gz", kind: "tar.gz", data: gz(makeTar(t, app)), lim: lim},
		{name: "zip", kind: "zip", data: makeZip(t, app[1:]), lim: lim},
		{name: "tar with ..", kind: "tar", data: makeTar(t, []archEntry{{name: "../evil", body: "x"}}), lim: lim, wantErr: "leaves the build dir"},
		{name: "tar with an absolute path", kind: "tar", data: makeTar(t, []archEntry{{name: "/etc/evil", body: "x"}}), lim: lim, wantErr: "leaves the build dir"},
		{name: "zip with ..", kind: "zip", data: makeZip(t, []archEntry{{name: "a/../../evil", body: "x"}}), lim: lim, wantErr: "leaves the build dir"},
		{name: "a symlink out", kind: "tar", data: makeTar(t, []archEntry{{name: "etc", link: "/etc"}}), lim: lim, wantErr: "links outside the archive"},
		{name: "a relative symlink out", kind: "tar", data: makeTar(t, []archEntry{{name: "a/b", link: "../../x"}}), lim: lim, wantErr: "links outside the archive"},
		{name: "a zip symlink out", kind: "zip", data: makeZip(t, []archEntry{{name: "x", link: "../../etc/passwd"}}), lim: lim, wantErr: "links outside the archive"},
		{name: "a write through a symlink", kind: "tar", data: makeTar(t, []archEntry{{name: "d", link: "."}, {name: "d/f", body: "x"}}), lim: lim},
		{name: "a hard link", kind: "tar", data: makeTar(t, []archEntry{{name: "f", body: "x"}, {name: "g", link: "f", hard: true}}), lim: lim, wantErr: "hard link"},
		{name: "too many entries", kind: "tar", data: makeTar(t, app), lim: ArchiveLimits{MaxFiles: 2, MaxBytes: 1 << 20}, wantErr: "more than 2 entries"},
		{name: "too many zip entries", kind: "zip", data: makeZip(t, app[1:]), lim: ArchiveLimits{MaxFiles: 2, MaxBytes: 1 << 20}, wantErr: "more than 2 entries"},
		{name: "too large", kind: "tar", data: makeTar(t, []archEntry{{name: "big", body: strings.Repeat("x", 4096)}}), lim: ArchiveLimits{MaxFiles: 10, MaxBytes: 1024}, wantErr: "archive too large"},
		{name: "a gzip bomb", kind: "tar.gz", data: gz(makeTar(t, []archEntry{{name: "big", body: strings.Repeat("x", 1<<16)}})), lim: ArchiveLimits{MaxFiles: 10, MaxBytes: 8192}, wantErr: "archive too large"},
		{name: "a zip bomb", kind: "zip", data: makeZip(t, []archEntry{{name: "big", body: strings.Repeat("x", 1<<16)}}), lim: ArchiveLimits{MaxFiles: 10, MaxBytes: 8192}, wantErr: "archive too large"},
		{name: "not a tar", kind: "tar", data: []byte("hello, not a tar at all, but long enough to fill a header block? no"), lim: lim, wantErr: "read archive"},
		{name: "not gzip", kind: "tar.gz", data: makeTar(t, app), lim: lim, wantErr: "read gzip"},
		{name: "not zip", kind: "zip", data: makeTar(t, app), lim: lim, wantErr: "read zip"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := UnpackArchive(bytes.NewReader(tc.data), tc.kind, dir, tc.lim)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
					t.Fatal("an entry landed outside the dir")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.name, "a write through") {
				return
			}
			data, err := os.ReadFile(filepath.Join(dir, "src", "main.go"))
			if err != nil || string(data) != "package main\n" {
				t.Fatalf("src/main.go = %q, %v", data, err)
			}
			if l, err := os.Readlink(filepath.Join(dir, "src", "link")); err != nil || l != "main.go" {
				t.Fatalf("src/link -> %q, %v", l, err)
			}
		})
	}
}
