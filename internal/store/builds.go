package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

var (
	bucketSettings    = []byte("settings") // installation-wide settings
	keyGlobalSettings = []byte("build")
	keyAppsSettings   = []byte("apps")
)

// GlobalBuildSettings returns the installation's build settings
// (`buildpacks:set-property --global`, `builder:set --global`).
func (s *Store) GlobalBuildSettings() (paas.BuildSettings, error) {
	return setting[paas.BuildSettings](s, keyGlobalSettings)
}

// UpdateGlobalBuildSettings applies fn to the installation's build settings.
func (s *Store) UpdateGlobalBuildSettings(fn func(*paas.BuildSettings) error) error {
	return updateSetting(s, keyGlobalSettings, fn)
}

// AppsSettings returns the installation's app settings (`apps:set --global`).
func (s *Store) AppsSettings() (paas.AppsSettings, error) {
	return setting[paas.AppsSettings](s, keyAppsSettings)
}

// UpdateAppsSettings applies fn to the installation's app settings.
func (s *Store) UpdateAppsSettings(fn func(*paas.AppsSettings) error) error {
	return updateSetting(s, keyAppsSettings, fn)
}

// setting reads the installation-wide setting under key (its zero value
// when never set).
func setting[T any](s *Store, key []byte) (T, error) {
	var set T
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSettings)
		if b == nil {
			return nil
		}
		v, ok, err := get[T](s, b, key)
		if ok {
			set = *v
		}
		return err
	})
	return set, err
}

// updateSetting applies fn to the setting under key, in one transaction.
func updateSetting[T any](s *Store, key []byte, fn func(*T) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSettings)
		if err != nil {
			return err
		}
		set := new(T)
		if v, ok, err := get[T](s, b, key); err != nil {
			return err
		} else if ok {
			set = v
		}
		if err := fn(set); err != nil {
			return err
		}
		return s.put(b, key, set)
	})
}

// BuildSettings returns the app's build settings merged over the global ones.
func (s *Store) BuildSettings(app string) (paas.BuildSettings, error) {
	a, err := s.App(app)
	if err != nil {
		return paas.BuildSettings{}, err
	}
	global, err := s.GlobalBuildSettings()
	if err != nil {
		return paas.BuildSettings{}, err
	}
	return a.Build.Merge(global), nil
}

// ErrBuildNotFound is returned for a build ID the app does not have.
var ErrBuildNotFound = errors.New("build not found")

// DeploysStamp is a string that changes whenever one of app's deploy
// records is written, added or removed: each record's key and nonce (every
// write seals under a fresh random one), read without opening a record.
// A watcher of the app's builds compares it before reading them again
// (Deploys opens and decodes every record, build log included).
func (s *Store) DeploysStamp(app string) (string, error) {
	var stamp []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		db, err := appBucket(tx, bucketDeploys, app)
		if err != nil {
			return err
		}
		if db == nil {
			return nil
		}
		return db.ForEach(func(k, v []byte) error {
			stamp = append(append(stamp, k...), s.seal.nonce(v)...)
			return nil
		})
	})
	return string(stamp), err
}

// Deploy returns the app's deploy record id, or its latest when id is 0.
func (s *Store) Deploy(app string, id int) (*paas.Deploy, error) {
	var d *paas.Deploy
	err := s.db.View(func(tx *bolt.Tx) error {
		db, err := appBucket(tx, bucketDeploys, app)
		if err != nil {
			return err
		}
		if db == nil {
			return ErrBuildNotFound
		}
		key := itob(id)
		if id == 0 {
			key, _ = db.Cursor().Last()
			if key == nil {
				return ErrBuildNotFound
			}
		}
		v, ok, err := get[paas.Deploy](s, db, key)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %d", ErrBuildNotFound, id)
		}
		d = v
		return nil
	})
	return d, err
}
