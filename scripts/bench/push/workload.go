package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// workload is a client repository to push, with deterministic pseudo-random
// (incompressible) content: the same bytes, hence the same commits, every run.
type workload struct {
	dir   string
	files int
	bytes int64
	paths []string
	rng   *rand.ChaCha8
}

func newWorkload(dir, seed string) *workload {
	var s [32]byte
	copy(s[:], seed)
	return &workload{dir: dir, rng: rand.NewChaCha8(s)}
}

func (w *workload) write(rel string, size int) error {
	p := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	data := make([]byte, size)
	w.rng.Read(data)
	return os.WriteFile(p, data, 0o644)
}

func (w *workload) add(rel string, size int) error {
	if err := w.write(rel, size); err != nil {
		return err
	}
	w.paths = append(w.paths, rel)
	w.files++
	w.bytes += int64(size)
	return nil
}

// commit makes the first commit and packs the repository, as a real one is
// (so the client reuses stored objects instead of compressing loose ones).
func (w *workload) commit(ctx context.Context, g *gitEnv) error {
	for _, args := range [][]string{
		{"init", "-q", "--initial-branch=main"},
		{"add", "-A"},
		{"commit", "-q", "-m", "bench workload"},
		{"repack", "-a", "-d", "-q"},
	} {
		if _, err := g.git(ctx, w.dir, args...); err != nil {
			return err
		}
	}
	return nil
}

// makeSmall is a small app: 20 files, about 50 KB.
func makeSmall(ctx context.Context, g *gitEnv, dir string) (*workload, error) {
	w := newWorkload(dir, "paas bench small")
	names := []string{"Dockerfile", "Procfile", "README.md", "go.mod", "main.go", "handlers.go", "store.go",
		"config.go", "static/index.html", "static/app.js", "static/app.css", "static/logo.svg",
		"templates/base.html", "templates/list.html", "templates/item.html", "internal/db/db.go",
		"internal/db/migrate.go", "internal/auth/auth.go", "scripts/release.sh", ".dockerignore"}
	for i, n := range names {
		if err := w.add(n, 1500+(i*173)%2100); err != nil {
			return nil, err
		}
	}
	return w, w.commit(ctx, g)
}

// makeLarge is a big repository: n files of kb KB each, 100 files per directory.
func makeLarge(ctx context.Context, g *gitEnv, dir string, n, kb int) (*workload, error) {
	w := newWorkload(dir, "paas bench large")
	for i := range n {
		if err := w.add(fmt.Sprintf("data/d%03d/f%05d.bin", i/100, i), kb<<10); err != nil {
			return nil, err
		}
	}
	return w, w.commit(ctx, g)
}

// commitChange makes the i-th incremental commit: one file rewritten.
func (w *workload) commitChange(ctx context.Context, g *gitEnv, i int) error {
	rel := w.paths[(i*7919)%len(w.paths)]
	st, err := os.Stat(filepath.Join(w.dir, rel))
	if err != nil {
		return err
	}
	if err := w.write(rel, int(st.Size())); err != nil {
		return err
	}
	_, err = g.git(ctx, w.dir, "commit", "-q", "-a", "-m", fmt.Sprintf("change %d", i+1))
	return err
}
