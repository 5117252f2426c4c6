package store_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
	"paas/internal/store"
)

const secretValue = "s3cr3t-d0-not-leak-4711"

// fileHas reports whether the store file under dir holds needle anywhere,
// freed pages included.
func fileHas(t *testing.T, dir, needle string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "paas.db"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(needle))
}

func TestConfigSealedOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustCreate(t, s, "app", "alice")
	if _, err := s.UpdateApp("app", func(a *paas.App) error { a.Config["TOKEN"] = secretValue; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRelease(release("app", 1, map[string]string{"TOKEN": secretValue})); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateGlobalConfig(func(c map[string]string) error { c["G"] = secretValue; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Plugin("postgres").Update("pw", func([]byte) ([]byte, error) { return []byte(secretValue), nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fileHas(t, dir, secretValue) {
		t.Fatal("the store file holds the config value in plain text")
	}
	fi, err := os.Stat(filepath.Join(dir, store.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	s = openStore(t, dir)
	rel, err := s.Release("app", 0)
	if err != nil || rel.Config["TOKEN"] != secretValue {
		t.Fatalf("Release after reopen = %v, %v", rel, err)
	}
	pw, err := s.Plugin("postgres").Get("pw")
	if err != nil || string(pw) != secretValue {
		t.Fatalf("plugin value after reopen = %q, %v", pw, err)
	}
}

// A store written before encryption: every value is kept, and sealed.
func TestPlainStoreMigrated(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "paas.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	app, _ := json.Marshal(&paas.App{Name: "old", Owner: "bob", Current: 1, Config: map[string]string{"TOKEN": secretValue}})
	rel, _ := json.Marshal(&paas.Release{App: "old", Version: 1, Config: map[string]string{"TOKEN": secretValue}})
	err = db.Update(func(tx *bolt.Tx) error {
		apps, _ := tx.CreateBucket([]byte("apps"))
		if err := apps.Put([]byte("old"), app); err != nil {
			return err
		}
		rels, _ := tx.CreateBucket([]byte("releases"))
		rb, _ := rels.CreateBucket([]byte("old"))
		if err := rb.Put([]byte{0, 0, 0, 0, 0, 0, 0, 1}, rel); err != nil {
			return err
		}
		settings, _ := tx.CreateBucket([]byte("settings"))
		return settings.Put([]byte("global-domain"), []byte("example.com"))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openStore(t, dir)
	a, err := s.App("old")
	if err != nil || a.Config["TOKEN"] != secretValue || a.Owner != "bob" {
		t.Fatalf("App after migration = %+v, %v", a, err)
	}
	r, err := s.Release("old", 1)
	if err != nil || r.Config["TOKEN"] != secretValue {
		t.Fatalf("Release after migration = %+v, %v", r, err)
	}
	if d, err := s.GlobalDomain(); err != nil || d != "example.com" {
		t.Fatalf("GlobalDomain after migration = %q, %v", d, err)
	}
	s.Close()
	// Not even in a freed page: Open rewrote the file.
	if fileHas(t, dir, secretValue) {
		t.Fatal("the store file still holds the plain value after migration")
	}
}

func TestWrongKeyRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	mustCreate(t, s, "app", "alice")
	s.Close()
	other, _ := store.NewKey()
	if _, err := store.OpenWithKey(dir, other); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("OpenWithKey(other key) = %v, want ErrWrongKey", err)
	}
}

func TestKeyFileModeChecked(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	k, _ := store.NewKey()
	if err := os.WriteFile(path, []byte(store.EncodeKey(k)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenWithKeyFile(dir, path, true); err == nil {
		t.Fatal("a key file others can read was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "bad"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenWithKeyFile(dir, filepath.Join(dir, "bad"), true); err == nil {
		t.Fatal("a key file without a key was accepted")
	}
}

func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, store.KeyFileName)
	s := openStore(t, dir)
	mustCreate(t, s, "app", "alice")
	if err := s.AddRelease(release("app", 1, map[string]string{"TOKEN": secretValue})); err != nil {
		t.Fatal(err)
	}
	old, err := store.ReadKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.RotateKeyFile(keyPath)
	if err != nil || n == 0 {
		t.Fatalf("RotateKeyFile = %d, %v", n, err)
	}
	if r, err := s.Release("app", 1); err != nil || r.Config["TOKEN"] != secretValue {
		t.Fatalf("Release after rotation = %+v, %v", r, err)
	}
	s.Close()
	if _, err := store.OpenWithKey(dir, old); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("the old key still opens the store: %v", err)
	}
	s = openStore(t, dir)
	if r, err := s.Release("app", 1); err != nil || r.Config["TOKEN"] != secretValue {
		t.Fatalf("Release after reopen = %+v, %v", r, err)
	}
	s.Close()

	// A rotation cut off after the store changed, before the key file was
	// replaced: the new key waits in .new and is put in place on open.
	cur, _ := store.ReadKeyFile(keyPath)
	next, _ := store.NewKey()
	s, err = store.OpenWithKey(dir, cur)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteKeyFile(keyPath+".new", next); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey(next); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir)
	if r, err := s.Release("app", 1); err != nil || r.Config["TOKEN"] != secretValue {
		t.Fatalf("Release after interrupted rotation = %+v, %v", r, err)
	}
	if k, err := store.ReadKeyFile(keyPath); err != nil || !bytes.Equal(k, next) {
		t.Fatalf("key file after recovery: %v", err)
	}
}
