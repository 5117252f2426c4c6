package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"paas/internal/backup"
	"paas/internal/commands"
	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
	"paas/scheduler"
)

// backups writes the backup of the data dir (backup:export).
type backups struct {
	dataDir string
	keyFile string // the config key's file, never in a backup
	st      *store.Store
	name    string
	version string
	// embedded: the images are in the data dir's registry, their names
	// starting with registry (HOST:PORT/NAME).
	embedded bool
	registry string
}

var _ commands.Backups = (*backups)(nil)

func (b *backups) Export(ctx context.Context, w io.Writer, images bool) (backup.Manifest, backup.Summary, error) {
	apps, err := b.st.Apps()
	if err != nil {
		return backup.Manifest{}, backup.Summary{}, err
	}
	m := backup.Manifest{Installation: b.name, Version: b.version, CreatedAt: time.Now().UTC(), Apps: len(apps), Images: images && b.embedded}
	if m.Images {
		m.Registry = b.registry
	}
	keyRel, _ := filepath.Rel(b.dataDir, b.keyFile)
	keyRel = filepath.ToSlash(keyRel)
	skip := func(rel string, dir bool) bool {
		top, _, _ := strings.Cut(rel, "/")
		switch {
		case rel == keyRel || rel == keyRel+".new":
			return true // kept apart
		case top == "builds" || rel == store.FileName+".compact":
			return true // builds under way, a compaction's copy
		case top == registryStorageDir:
			// Uploads under way are not images yet.
			return !images || dir && path.Base(rel) == "_uploads"
		}
		return false
	}
	src := backup.Source{Dir: b.dataDir, StoreFile: store.FileName, Snapshot: b.st.Snapshot, Skip: skip}
	sum, err := backup.Write(w, src, m)
	return m, sum, err
}

// restoreRollouts runs, after a start on a restored data dir (`paasd
// restore` left backup.RestoredName there), every deployed app's current
// release again: on a new Swarm nothing of the apps runs yet. Each is a
// deploy of reason "restore", recorded and audited; the marker goes once
// every app was tried, and a failure is logged with what to do.
// registry is where this paasd names images (HOST:PORT/NAME of the
// embedded registry; "" for a registry elsewhere): restored images named
// at another address are renamed to it first.
func restoreRollouts(ctx context.Context, dataDir, registry string, st *store.Store, pipeline *deploy.Pipeline, sched *scheduler.Swarm, audit *auditLog, log *slog.Logger) error {
	marker := filepath.Join(dataDir, backup.RestoredName)
	data, err := os.ReadFile(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m backup.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%s: %w", marker, err)
	}
	apps, err := st.Apps()
	if err != nil {
		return err
	}
	log.Info("restored from a backup: rolling the apps out again", "backup_of", m.Installation, "created_at", m.CreatedAt, "apps", len(apps))
	if m.Images && m.Registry != "" && registry != "" && m.Registry != registry {
		n, err := st.RebaseImages(m.Registry, registry)
		if err != nil {
			return fmt.Errorf("rename the restored images: %w", err)
		}
		log.Info("renamed the releases' images to this registry's address", "from", m.Registry, "to", registry, "releases", n)
	}
	// Each app keeps its own network: on a new Swarm, it is made again.
	var nets []string
	for _, app := range apps {
		nets = append(nets, app.Network.Own)
	}
	if n, err := sched.RestoreAppNetworks(ctx, nets); err != nil {
		return fmt.Errorf("make the apps' networks again: %w", err)
	} else if n > 0 {
		log.Info("made the apps' networks again", "count", n)
	}
	who := paas.Identity{Name: "paasd", Source: "restore"}
	failed := 0
	for _, app := range apps {
		if app.Current == 0 || app.Stopped {
			continue
		}
		err := pipeline.Redeploy(ctx, app.Name, who, "restore", io.Discard)
		ev := &paas.Event{Actor: who.Name, Source: who.Source, App: app.Name, Action: "restore", Result: "ok", Detail: fmt.Sprintf("v%d rolled out from the backup of %s", app.Current, m.CreatedAt.Format(time.RFC3339))}
		if err != nil {
			failed++
			ev.Result, ev.Code, ev.Detail = "error", 1, commands.AuditArg(err.Error())
			log.Error("roll out a restored app; `ssh paas ps:rebuild APP` builds it again from its repository", "app", app.Name, "err", err)
		}
		audit.Record(ev)
		if ctx.Err() != nil {
			return nil // stopped: the next start tries again
		}
	}
	log.Info("restored apps rolled out", "failed", failed)
	return os.Remove(marker)
}

// Restore puts the backup read from r into dataDir, which must be missing
// or hold only the config key: the key in keyFile (DATA_DIR/config.key
// when empty), kept apart from the backup, which must open its store
// before anything is in place.
func Restore(r io.Reader, dataDir, keyFile string) (backup.Manifest, backup.Summary, error) {
	keyPath := KeyFile(dataDir, keyFile)
	if _, err := store.ReadKeyFile(keyPath); errors.Is(err, fs.ErrNotExist) {
		return backup.Manifest{}, backup.Summary{}, fmt.Errorf("%w\n  A backup holds no config key: put the key file kept with it at %s (or name it with --config-key-file)", err, keyPath)
	} else if err != nil {
		return backup.Manifest{}, backup.Summary{}, err
	}
	keep := func(name string) bool { return filepath.Join(dataDir, name) == keyPath }
	check := func(dir string) error {
		st, err := store.OpenWithKeyFile(dir, keyPath, false)
		if errors.Is(err, store.ErrWrongKey) {
			return fmt.Errorf("the config key in %s does not open this backup's store: use the key kept with the backup", keyPath)
		}
		if err != nil {
			return err
		}
		return st.Close()
	}
	return backup.Restore(r, dataDir, keep, check)
}
