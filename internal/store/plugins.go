package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketPlugins holds one nested bucket per plugin: key -> value.
var bucketPlugins = []byte("plugins")

// PluginData is one plugin's own space in the store (plugins.Data).
type PluginData struct {
	s    *Store
	name []byte
}

// Plugin returns the space of the plugin name.
func (s *Store) Plugin(name string) *PluginData {
	return &PluginData{s: s, name: []byte(name)}
}

// Get returns key's value, nil when missing.
func (p *PluginData) Get(key string) ([]byte, error) {
	var out []byte
	err := p.s.db.View(func(tx *bolt.Tx) error {
		if b := p.bucket(tx); b != nil {
			v, err := p.s.getRaw(b, []byte(key))
			out = v
			return err
		}
		return nil
	})
	return out, err
}

// Update replaces key's value with fn's result (nil deletes), atomically; an
// error from fn changes nothing.
func (p *PluginData) Update(key string, fn func(old []byte) ([]byte, error)) error {
	return p.s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketPlugins)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists(p.name)
		if err != nil {
			return err
		}
		old, err := p.s.getRaw(b, []byte(key))
		if err != nil {
			return err
		}
		v, err := fn(old)
		if err != nil {
			return err
		}
		if v == nil {
			return b.Delete([]byte(key))
		}
		return p.s.putRaw(b, []byte(key), v)
	})
}

// List returns every key and value.
func (p *PluginData) List() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := p.s.db.View(func(tx *bolt.Tx) error {
		b := p.bucket(tx)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil
			}
			plain, err := p.s.seal.open(v)
			if err != nil {
				return fmt.Errorf("plugin data %s: %w", k, err)
			}
			out[string(k)] = plain
			return nil
		})
	})
	return out, err
}

func (p *PluginData) bucket(tx *bolt.Tx) *bolt.Bucket {
	root := tx.Bucket(bucketPlugins)
	if root == nil {
		return nil
	}
	return root.Bucket(p.name)
}
