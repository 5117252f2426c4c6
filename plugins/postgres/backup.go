package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Backup is one kept backup file.
type Backup struct {
	File string    `json:"file"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

const backupTimeFormat = "20060102T150405Z"

func (p *Postgres) backupDir(db string) string { return filepath.Join(p.opts.BackupDir, db) }

// keptBackups lists db's backups, newest first.
func (p *Postgres) keptBackups(db string) ([]Backup, error) {
	entries, err := os.ReadDir(p.backupDir(db))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []Backup
	for _, e := range entries {
		stamp, ok := strings.CutSuffix(strings.TrimPrefix(e.Name(), db+"-"), ".dump")
		if !ok || e.IsDir() {
			continue
		}
		t, err := time.Parse(backupTimeFormat, stamp)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Backup{File: filepath.Join(p.backupDir(db), e.Name()), Time: t, Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

// backupNow writes a dump of db to its backup folder (via a temporary file, so
// a failed dump leaves no partial backup) and keeps the newest keep.
func (p *Postgres) backupNow(ctx context.Context, db *Database, keep int, now time.Time) (string, error) {
	dir := p.backupDir(db.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup dir: %w", err)
	}
	final := filepath.Join(dir, db.Name+"-"+now.UTC().Format(backupTimeFormat)+".dump")
	f, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		return "", fmt.Errorf("create backup: %w", err)
	}
	defer os.Remove(f.Name())
	var stderr strings.Builder
	err = p.dump(ctx, db, f, &limitedWriter{w: &stderr, n: 4096})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return "", fmt.Errorf("keep backup: %w", err)
	}
	return final, p.prune(db.Name, keep)
}

// prune removes all but the newest keep backups of db.
func (p *Postgres) prune(db string, keep int) error {
	kept, err := p.keptBackups(db)
	if err != nil {
		return err
	}
	var errs []error
	for i := keep; i < len(kept); i++ {
		if err := os.Remove(kept[i].File); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if l.n > 0 {
		k := min(len(b), l.n)
		l.w.Write(b[:k])
		l.n -= k
	}
	return len(b), nil
}

// Run implements plugins.Runner: each minute it backs up the databases whose
// schedule matches that minute. At start it removes client containers a
// previous paasd left.
func (p *Postgres) Run(ctx context.Context) error {
	p.removeClients(ctx)
	for {
		now := p.now()
		next := now.Truncate(time.Minute).Add(time.Minute)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next.Sub(now)):
		}
		p.runDue(ctx, next)
	}
}

// runDue backs up every database whose schedule matches minute t.
func (p *Postgres) runDue(ctx context.Context, t time.Time) {
	dbs, err := p.all()
	if err != nil {
		p.log.Error("scheduled backups: list databases", "err", err)
		return
	}
	for _, db := range dbs {
		if db.Schedule == "" {
			continue
		}
		s, err := parseSchedule(db.Schedule)
		if err != nil || !s.matches(t) {
			continue
		}
		bctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		file, err := p.backupNow(bctx, db, keepOf(db), t)
		cancel()
		if err != nil {
			p.log.Error("scheduled backup failed", "db", db.Name, "err", err)
			continue
		}
		p.log.Info("scheduled backup", "db", db.Name, "file", file)
	}
}
