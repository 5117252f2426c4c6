// Package store keeps the platform's state (apps, config, keys, releases, deploy
// records) in one embedded, crash-safe bbolt file in the data dir.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"paas/internal/paas"
)

var (
	bucketApps     = []byte("apps")
	bucketKeys     = []byte("keys")
	bucketReleases = []byte("releases") // nested: app -> version -> Release
	bucketDeploys  = []byte("deploys")  // nested: app -> id -> Deploy
)

// ErrInUse is returned by Open when another process holds the store file.
var ErrInUse = errors.New("the store file is in use by another process")

// Store is the state of one installation.
type Store struct {
	db   *bolt.DB
	seal *sealer
	list appList // what AppList decoded
}

// Open opens (creating when missing) the store file under dataDir, with
// the config key in dataDir's key file (created when missing).
func Open(dataDir string) (*Store, error) {
	return OpenWithKeyFile(dataDir, filepath.Join(dataDir, KeyFileName), true)
}

// OpenWithKey opens (creating when missing) the store file under dataDir,
// its values sealed under key. Values a store from before encryption held
// in plain are sealed now, every one kept. ErrWrongKey when key is not the
// store's.
func OpenWithKey(dataDir string, key []byte) (*Store, error) {
	seal, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dataDir, FileName), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: %w", ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketApps, bucketKeys, bucketReleases, bucketDeploys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store: %w", err)
	}
	s := &Store{db: db, seal: seal}
	n, err := s.unlock()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if n > 0 {
		// The plain values are gone from the tree but not from the file's
		// free pages: rewrite the file without them.
		if err := s.compact(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// compact rewrites the store file with only its live pages, so that no
// value it held before (plain, or sealed under a replaced key) stays in a
// freed page. Nothing else may use the store meanwhile.
func (s *Store) compact() error {
	path := s.db.Path()
	tmp := path + ".compact"
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	if err := bolt.Compact(dst, s.db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact store: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact store: %w", err)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("compact store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("reopen store: %w", err)
	}
	s.db = db
	return nil
}

// Close closes the store file.
func (s *Store) Close() error { return s.db.Close() }

// appBucket is app's bucket under parent (releases, deploys), nil while
// nothing of app's is stored there, or paas.ErrAppNotFound when there is
// no such app.
func appBucket(tx *bolt.Tx, parent []byte, app string) (*bolt.Bucket, error) {
	if tx.Bucket(bucketApps).Get([]byte(app)) == nil {
		return nil, paas.ErrAppNotFound
	}
	return tx.Bucket(parent).Bucket([]byte(app)), nil
}

func get[T any](s *Store, b *bolt.Bucket, key []byte) (*T, bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return nil, false, nil
	}
	v := new(T)
	if err := s.decode(raw, v); err != nil {
		return nil, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, true, nil
}

func (s *Store) put(b *bolt.Bucket, key []byte, v any) error {
	raw, err := s.encode(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func itob(n int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(n))
	return b
}

// CreateApp records a new app; ErrAppExists when the name is taken.
func (s *Store) CreateApp(app *paas.App) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketApps)
		if b.Get([]byte(app.Name)) != nil {
			return paas.ErrAppExists
		}
		if app.Config == nil {
			app.Config = map[string]string{}
		}
		return s.put(b, []byte(app.Name), app)
	})
}

// App returns the named app or ErrAppNotFound.
func (s *Store) App(name string) (*paas.App, error) {
	var app *paas.App
	err := s.db.View(func(tx *bolt.Tx) error {
		a, ok, err := get[paas.App](s, tx.Bucket(bucketApps), []byte(name))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrAppNotFound
		}
		app = a
		return nil
	})
	return app, err
}

// Apps returns every app, sorted by name.
func (s *Store) Apps() ([]*paas.App, error) {
	var apps []*paas.App
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApps).ForEach(func(k, v []byte) error {
			a := new(paas.App)
			if err := s.decode(v, a); err != nil {
				return fmt.Errorf("decode app %s: %w", k, err)
			}
			apps = append(apps, a)
			return nil
		})
	})
	return apps, err
}

// UpdateApp applies fn to the stored app atomically.
func (s *Store) UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error) {
	var app *paas.App
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketApps)
		a, ok, err := get[paas.App](s, b, []byte(name))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrAppNotFound
		}
		if a.Config == nil {
			a.Config = map[string]string{}
		}
		if err := fn(a); err != nil {
			return err
		}
		app = a
		return s.put(b, []byte(name), a)
	})
	return app, err
}

// DeleteApp removes the app with its releases and deploy records.
func (s *Store) DeleteApp(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketApps).Get([]byte(name)) == nil {
			return paas.ErrAppNotFound
		}
		if err := tx.Bucket(bucketApps).Delete([]byte(name)); err != nil {
			return err
		}
		for _, bn := range [][]byte{bucketReleases, bucketDeploys} {
			if err := tx.Bucket(bn).DeleteBucket([]byte(name)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
}

// AddKey records a user key; ErrKeyExists when the name or the key is taken.
func (s *Store) AddKey(k *paas.SSHKey) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b.Get([]byte(k.Name)) != nil {
			return fmt.Errorf("%w: name %q is taken", paas.ErrKeyExists, k.Name)
		}
		err := b.ForEach(func(_, v []byte) error {
			var other paas.SSHKey
			if err := s.decode(v, &other); err != nil {
				return err
			}
			if other.Fingerprint == k.Fingerprint {
				return fmt.Errorf("%w: the key is already added as %q", paas.ErrKeyExists, other.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return s.put(b, []byte(k.Name), k)
	})
}

// Keys returns every user key, sorted by name.
func (s *Store) Keys() ([]*paas.SSHKey, error) {
	var keys []*paas.SSHKey
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			k := new(paas.SSHKey)
			if err := s.decode(v, k); err != nil {
				return err
			}
			keys = append(keys, k)
			return nil
		})
	})
	return keys, err
}

// RemoveKey deletes a user key by name.
func (s *Store) RemoveKey(name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b.Get([]byte(name)) == nil {
			return paas.ErrKeyNotFound
		}
		return b.Delete([]byte(name))
	})
}

// AddRelease records rel under its version (chosen by the caller, who holds the
// app's deploy lock) and makes it current.
func (s *Store) AddRelease(rel *paas.Release) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		apps := tx.Bucket(bucketApps)
		app, ok, err := get[paas.App](s, apps, []byte(rel.App))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrAppNotFound
		}
		rb, err := tx.Bucket(bucketReleases).CreateBucketIfNotExists([]byte(rel.App))
		if err != nil {
			return err
		}
		if rb.Get(itob(rel.Version)) != nil {
			return fmt.Errorf("release v%d of %s already exists", rel.Version, rel.App)
		}
		if err := s.put(rb, itob(rel.Version), rel); err != nil {
			return err
		}
		app.Current, app.Stopped = rel.Version, false
		app.Config, app.ConfigVersion = rel.Config, rel.ConfigVersion
		// A resource change, like a config change, is the app's once
		// the release that carries it runs.
		app.Resources = rel.Resources
		return s.put(apps, []byte(app.Name), app)
	})
}

// LatestVersion returns the highest release version of app, 0 when none.
func (s *Store) LatestVersion(app string) (int, error) {
	v := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		rb, err := appBucket(tx, bucketReleases, app)
		if err != nil {
			return err
		}
		if rb != nil {
			if k, _ := rb.Cursor().Last(); k != nil {
				v = int(binary.BigEndian.Uint64(k))
			}
		}
		return nil
	})
	return v, err
}

// Release returns version v of app, or its current release when v is 0.
func (s *Store) Release(app string, v int) (*paas.Release, error) {
	var rel *paas.Release
	err := s.db.View(func(tx *bolt.Tx) error {
		a, ok, err := get[paas.App](s, tx.Bucket(bucketApps), []byte(app))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrAppNotFound
		}
		if v == 0 {
			v = a.Current
		}
		rb := tx.Bucket(bucketReleases).Bucket([]byte(app))
		if v == 0 || rb == nil {
			return paas.ErrNoRelease
		}
		r, ok, err := get[paas.Release](s, rb, itob(v))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("release v%d of %s: %w", v, app, paas.ErrNoRelease)
		}
		rel = r
		return nil
	})
	return rel, err
}

// Releases returns the app's releases, newest first.
func (s *Store) Releases(app string) ([]*paas.Release, error) {
	var rels []*paas.Release
	err := s.db.View(func(tx *bolt.Tx) error {
		rb, err := appBucket(tx, bucketReleases, app)
		if err != nil {
			return err
		}
		if rb == nil {
			return nil
		}
		c := rb.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			r := new(paas.Release)
			if err := s.decode(v, r); err != nil {
				return err
			}
			rels = append(rels, r)
		}
		return nil
	})
	return rels, err
}

// StartDeploy records a running deploy and assigns its ID.
func (s *Store) StartDeploy(d *paas.Deploy) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketApps).Get([]byte(d.App)) == nil {
			return paas.ErrAppNotFound
		}
		db, err := tx.Bucket(bucketDeploys).CreateBucketIfNotExists([]byte(d.App))
		if err != nil {
			return err
		}
		seq, err := db.NextSequence()
		if err != nil {
			return err
		}
		d.ID = int(seq)
		d.State = paas.DeployRunning
		return s.put(db, itob(d.ID), d)
	})
}

// FinishDeploy stores the final state of d.
func (s *Store) FinishDeploy(d *paas.Deploy) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		db := tx.Bucket(bucketDeploys).Bucket([]byte(d.App))
		if db == nil {
			return paas.ErrAppNotFound
		}
		return s.put(db, itob(d.ID), d)
	})
}

// Deploys returns the app's deploy records, newest first.
func (s *Store) Deploys(app string) ([]*paas.Deploy, error) {
	var out []*paas.Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		db, err := appBucket(tx, bucketDeploys, app)
		if err != nil {
			return err
		}
		if db == nil {
			return nil
		}
		c := db.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			d := new(paas.Deploy)
			if err := s.decode(v, d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// OpenDeploys returns every deploy still recorded as running, oldest first
// per app. At start-up these are the deploys a stopped paasd left open: a
// deploy cannot outlive the process that ran it.
func (s *Store) OpenDeploys() ([]*paas.Deploy, error) {
	var open []*paas.Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeploys).ForEachBucket(func(app []byte) error {
			return tx.Bucket(bucketDeploys).Bucket(app).ForEach(func(_, v []byte) error {
				d := new(paas.Deploy)
				if err := s.decode(v, d); err != nil {
					return err
				}
				if d.State == paas.DeployRunning {
					open = append(open, d)
				}
				return nil
			})
		})
	})
	return open, err
}

// Snapshot gives fn a consistent copy of the store file as it is now, of
// size bytes, for a backup: writes wait meanwhile only for the copy's
// start (bbolt's read transaction). Its values stay sealed under the
// config key.
func (s *Store) Snapshot(fn func(size int64, file io.WriterTo) error) error {
	return s.db.View(func(tx *bolt.Tx) error { return fn(tx.Size(), tx) })
}

// FileName is the store's file in the data dir.
const FileName = "paas.db"

// RebaseImages renames the image of every release whose repository starts
// with from+"/" to start with to+"/" instead: the same registry, restored
// at another address. It returns how many releases changed.
func (s *Store) RebaseImages(from, to string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketReleases)
		var apps [][]byte
		err := all.ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket: an app's releases
				apps = append(apps, slices.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, app := range apps {
			rb := all.Bucket(app)
			changed := map[string]*paas.Release{} // by key; written after the walk
			err := rb.ForEach(func(k, v []byte) error {
				r := new(paas.Release)
				if err := s.decode(v, r); err != nil {
					return err
				}
				if rest, ok := strings.CutPrefix(r.Image.Repository, from+"/"); ok {
					r.Image.Repository = to + "/" + rest
					changed[string(k)] = r
				}
				return nil
			})
			if err != nil {
				return err
			}
			for k, r := range changed {
				if err := s.put(rb, []byte(k), r); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
