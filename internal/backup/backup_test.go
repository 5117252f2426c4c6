package backup

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// snapshot stands for the store: its file is the bytes given.
func snapshot(data string) func(fn func(int64, io.WriterTo) error) error {
	return func(fn func(int64, io.WriterTo) error) error {
		return fn(int64(len(data)), strings.NewReader(data))
	}
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "paas.db"), "stale file, not the snapshot", 0o600)
	write(t, filepath.Join(src, "config.key"), "the key", 0o600)
	write(t, filepath.Join(src, "repos", "app.git", "HEAD"), "ref: refs/heads/main\n", 0o644)
	write(t, filepath.Join(src, "ssh_host_ed25519_key"), "host key", 0o600)
	write(t, filepath.Join(src, "registry", "blobs", "x"), "layer", 0o644)
	write(t, filepath.Join(src, "registry", "_uploads", "partial"), "half", 0o644)
	if err := os.Symlink("/etc/passwd", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m := Manifest{Installation: "paas", Version: "test", CreatedAt: time.Now().UTC().Truncate(time.Second), Apps: 1, Images: true}
	sum, err := Write(&buf, Source{Dir: src, StoreFile: "paas.db", Snapshot: snapshot("the snapshot"),
		Skip: func(rel string, dir bool) bool { return rel == "config.key" || dir && filepath.Base(rel) == "_uploads" }}, m)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != 4 {
		t.Errorf("wrote %d files, want 4 (store, HEAD, host key, blob)", sum.Files)
	}

	dst := filepath.Join(t.TempDir(), "data")
	write(t, filepath.Join(dst, "config.key"), "the key", 0o600)
	var checked string
	got, _, err := Restore(bytes.NewReader(buf.Bytes()), dst, func(name string) bool { return name == "config.key" },
		func(dir string) error { checked = read(t, filepath.Join(dir, "paas.db")); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if checked != "the snapshot" {
		t.Errorf("check saw store %q", checked)
	}
	if got.Installation != "paas" || got.Format != Format || !got.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("manifest = %+v", got)
	}
	for name, want := range map[string]string{
		"paas.db": "the snapshot", "config.key": "the key", "repos/app.git/HEAD": "ref: refs/heads/main\n",
		"ssh_host_ed25519_key": "host key", "registry/blobs/x": "layer",
	} {
		if s := read(t, filepath.Join(dst, name)); s != want {
			t.Errorf("%s = %q, want %q", name, s, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "ssh_host_ed25519_key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode: %v %v", fi.Mode(), err)
	}
	for _, gone := range []string{"registry/_uploads", "link"} {
		if _, err := os.Lstat(filepath.Join(dst, gone)); err == nil {
			t.Errorf("%s was restored", gone)
		}
	}
	if !strings.Contains(read(t, filepath.Join(dst, RestoredName)), `"installation": "paas"`) {
		t.Error("no restored marker")
	}
	entries, _ := os.ReadDir(dst)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".restore-") {
			t.Errorf("left %s", e.Name())
		}
	}
}

// backupOf is a backup with the manifest and the entries given.
func backupOf(t *testing.T, entries ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	man := `{"format":1,"installation":"paas"}`
	tw.WriteHeader(&tar.Header{Name: ManifestName, Mode: 0o600, Size: int64(len(man)), Typeflag: tar.TypeReg})
	tw.Write([]byte(man))
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestRestoreRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		backup []byte
		setup  func(dir string)
		check  func(string) error
		want   string
	}{
		"climbs out":   {backup: backupOf(t, &tar.Header{Name: "../escaped", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg}), want: "not a path inside"},
		"absolute":     {backup: backupOf(t, &tar.Header{Name: "/etc/x", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg}), want: "not a path inside"},
		"symlink":      {backup: backupOf(t, &tar.Header{Name: "l", Linkname: "/etc", Typeflag: tar.TypeSymlink}), want: "not a file or a directory"},
		"marker":       {backup: backupOf(t, &tar.Header{Name: RestoredName, Size: 1, Mode: 0o644, Typeflag: tar.TypeReg}), want: "only a restore writes"},
		"not a backup": {backup: []byte("hello"), want: "not a paas backup"},
		"kept file":    {backup: backupOf(t, &tar.Header{Name: "config.key", Size: 1, Mode: 0o600, Typeflag: tar.TypeReg}), want: "config.key, which is in"},
		"not empty": {backup: backupOf(t), want: "is not empty",
			setup: func(dir string) { write(t, filepath.Join(dir, "paas.db"), "mine", 0o600) }},
		"missing dir": {backup: []byte("hello"), want: "not a paas backup",
			setup: func(dir string) { os.RemoveAll(dir) }},
		"check fails": {backup: backupOf(t, &tar.Header{Name: "paas.db", Size: 1, Mode: 0o600, Typeflag: tar.TypeReg}), want: "wrong key",
			check: func(string) error { return errors.New("wrong key") }},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			write(t, filepath.Join(dir, "config.key"), "key", 0o600)
			if tc.setup != nil {
				tc.setup(dir)
			}
			before, _ := os.ReadDir(dir)
			_, _, err := Restore(bytes.NewReader(tc.backup), dir, func(n string) bool { return n == "config.key" }, tc.check)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Restore = %v, want %q", err, tc.want)
			}
			if name == "missing dir" {
				if _, err := os.Stat(dir); err == nil {
					t.Error("the data dir was made")
				}
				return
			}
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) {
				t.Errorf("the data dir changed: %v -> %v", before, after)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "config.key")); string(b) != "key" {
				t.Error("the key changed")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escaped")); err == nil {
				t.Error("an entry escaped")
			}
		})
	}
}
