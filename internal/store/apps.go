package store

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

// keyGlobalConfig holds the installation's config vars (config:set --global)
// in bucketSettings.
var keyGlobalConfig = []byte("config")

// GlobalConfig returns the config vars every app inherits (config:set
// --global); never nil.
func (s *Store) GlobalConfig() (map[string]string, error) {
	cfg, err := setting[map[string]string](s, keyGlobalConfig)
	if cfg == nil {
		cfg = map[string]string{}
	}
	return cfg, err
}

// UpdateGlobalConfig applies fn to the global config vars in one transaction.
func (s *Store) UpdateGlobalConfig(fn func(cfg map[string]string) error) error {
	return updateSetting(s, keyGlobalConfig, func(cfg *map[string]string) error {
		if *cfg == nil {
			*cfg = map[string]string{}
		}
		return fn(*cfg)
	})
}

// RenameApp moves the app old, with its releases, deploy records and routing
// settings, to the name to in one transaction: either all of it moves or
// nothing does. The app's RenamedFrom is set to old. ErrAppExists when to is taken. image maps each release's
// image to the one it has under the new name (copied by the caller); a
// release whose image is not in it keeps its image.
func (s *Store) RenameApp(old, to string, image func(paas.Image) paas.Image) (*paas.App, error) {
	var app *paas.App
	err := s.db.Update(func(tx *bolt.Tx) error {
		apps := tx.Bucket(bucketApps)
		a, ok, err := get[paas.App](s, apps, []byte(old))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrAppNotFound
		}
		if apps.Get([]byte(to)) != nil {
			return paas.ErrAppExists
		}
		a.Name, a.RenamedFrom = to, old
		if err := apps.Delete([]byte(old)); err != nil {
			return err
		}
		if err := s.put(apps, []byte(to), a); err != nil {
			return err
		}
		app = a
		if err := moveNested(s, tx.Bucket(bucketReleases), old, to, func(r *paas.Release) {
			r.App = to
			if image != nil {
				r.Image = image(r.Image)
			}
		}); err != nil {
			return fmt.Errorf("move releases: %w", err)
		}
		if err := moveNested(s, tx.Bucket(bucketDeploys), old, to, func(d *paas.Deploy) { d.App = to }); err != nil {
			return fmt.Errorf("move deploy records: %w", err)
		}
		if b := tx.Bucket(bucketRouting); b != nil {
			if raw := b.Get([]byte(old)); raw != nil {
				raw = append([]byte(nil), raw...)
				if err := b.Delete([]byte(old)); err != nil {
					return err
				}
				if err := b.Put([]byte(to), raw); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return app, err
}

// moveNested moves the nested bucket old of parent to the name to, passing each
// record through fix. The sequence (deploy IDs) carries over.
func moveNested[T any](s *Store, parent *bolt.Bucket, old, to string, fix func(*T)) error {
	src := parent.Bucket([]byte(old))
	if src == nil {
		return nil
	}
	if parent.Bucket([]byte(to)) != nil {
		if err := parent.DeleteBucket([]byte(to)); err != nil {
			return err
		}
	}
	dst, err := parent.CreateBucket([]byte(to))
	if err != nil {
		return err
	}
	err = src.ForEach(func(k, v []byte) error {
		rec := new(T)
		if err := s.decode(v, rec); err != nil {
			return fmt.Errorf("decode %x: %w", k, err)
		}
		fix(rec)
		return s.put(dst, append([]byte(nil), k...), rec)
	})
	if err != nil {
		return err
	}
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	if err := parent.DeleteBucket([]byte(old)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	return nil
}
