package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"paas/internal/paas"
	"paas/internal/store"
)

// TestBackupRestore writes the backup of a real store and data dir and
// restores it: with the key kept apart it opens; with another key, or
// without one, nothing is put in place.
func TestBackupRestore(t *testing.T) {
	src := t.TempDir()
	st, err := store.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateApp(&paas.App{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(src, "repos", "web.git"), 0o700)
	os.WriteFile(filepath.Join(src, "repos", "web.git", "HEAD"), []byte("ref: refs/heads/main\n"), 0o644)
	os.MkdirAll(filepath.Join(src, "builds", "b1"), 0o700)
	os.WriteFile(filepath.Join(src, "builds", "b1", "x"), []byte("half a build"), 0o644)
	b := &backups{dataDir: src, keyFile: filepath.Join(src, store.KeyFileName), st: st, name: "paas", version: "test", embedded: true}
	var buf bytes.Buffer
	m, sum, err := b.Export(context.Background(), &buf, true)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m.Apps != 1 || !m.Images || sum.Files != 2 {
		t.Fatalf("manifest %+v, %d files; want 1 app, images, the store and HEAD", m, sum.Files)
	}
	if bytes.Contains(buf.Bytes(), []byte("half a build")) {
		t.Error("a build under way is in the backup")
	}
	key, err := os.ReadFile(filepath.Join(src, store.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), bytes.TrimSpace(key)) {
		t.Error("the config key is in the backup")
	}

	dst := filepath.Join(t.TempDir(), "data")
	if _, _, err := Restore(bytes.NewReader(buf.Bytes()), dst, ""); err == nil || !strings.Contains(err.Error(), "A backup holds no config key") {
		t.Fatalf("without a key: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	k, _ := store.NewKey()
	if err := store.WriteKeyFile(other, k); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Restore(bytes.NewReader(buf.Bytes()), dst, other); err == nil || !strings.Contains(err.Error(), "does not open this backup's store") {
		t.Fatalf("with another key: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("a refused restore made the data dir")
	}
	os.MkdirAll(dst, 0o700)
	os.WriteFile(filepath.Join(dst, store.KeyFileName), key, 0o600)
	if _, _, err := Restore(bytes.NewReader(buf.Bytes()), dst, ""); err != nil {
		t.Fatal(err)
	}
	st, err = OpenStore(dst, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.App("web"); err != nil {
		t.Errorf("the restored store: %v", err)
	}
}
