package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Every value in the store file is sealed with AES-256-GCM (Go's crypto/aes
// and crypto/cipher) under the installation's config key: config vars,
// certificate keys, plugin data, releases, everything. Keys (app names,
// release numbers) stay readable, so bbolt still finds and orders them.
// One rule for every value keeps a new bucket from leaking by being
// forgotten, and lets Open migrate and RotateKey re-encrypt by walking the
// file without knowing what each bucket holds.

// KeySize is the length of a config key: AES-256.
const KeySize = 32

// sealedMagic starts every sealed value: no JSON document, and no value a
// plain (pre-encryption) store held, starts with a zero byte.
var sealedMagic = []byte("\x00paas-seal1\x00")

var (
	bucketMeta = []byte("meta")
	// keyCanary holds a sealed known text: it tells a wrong key from a
	// damaged value, and a plain store (none) from a sealed one.
	keyCanary  = []byte("canary")
	canaryText = []byte("paas config key check")
)

// ErrWrongKey is returned by Open when the config key does not open the store.
var ErrWrongKey = errors.New("the config key does not open this store")

// sealer seals and opens values under one key.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("config key: %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

func sealed(raw []byte) bool { return bytes.HasPrefix(raw, sealedMagic) }

// seal returns plain encrypted under a fresh random nonce.
func (s *sealer) seal(plain []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, len(sealedMagic)+ns, len(sealedMagic)+ns+len(plain)+s.aead.Overhead())
	copy(out, sealedMagic)
	if _, err := rand.Read(out[len(sealedMagic):]); err != nil {
		panic("store: no randomness for a nonce: " + err.Error()) // crypto/rand never fails on Linux
	}
	return s.aead.Seal(out, out[len(sealedMagic):], plain, nil)
}

// nonce returns a sealed value's nonce, without opening it: every write
// seals under a fresh one, so it tells one write from another.
func (s *sealer) nonce(raw []byte) []byte {
	rest := raw[min(len(raw), len(sealedMagic)):]
	return rest[:min(len(rest), s.aead.NonceSize())]
}

// open returns the plain text of a sealed value; a value that is not sealed
// is an error (Open sealed every value before anything reads).
func (s *sealer) open(raw []byte) ([]byte, error) {
	if !sealed(raw) {
		return nil, errors.New("value is not sealed")
	}
	rest := raw[len(sealedMagic):]
	ns := s.aead.NonceSize()
	if len(rest) < ns+s.aead.Overhead() {
		return nil, errors.New("sealed value is truncated")
	}
	plain, err := s.aead.Open(nil, rest[:ns], rest[ns:], nil)
	if err != nil {
		return nil, fmt.Errorf("open sealed value: %w", err)
	}
	return plain, nil
}

// NewKey returns a fresh random config key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// EncodeKey is the text form of a key, as key files and PAAS_CONFIG_KEY hold it.
func EncodeKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

// DecodeKey reads the text form of a key.
func DecodeKey(text string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("config key: not base64: %w", err)
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("config key: %d bytes, want %d (base64 of 32 random bytes)", len(k), KeySize)
	}
	return k, nil
}

// ReadKeyFile reads a key file, refusing one that others than its owner may
// read.
func ReadKeyFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("config key file %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config key file: %w", err)
	}
	k, err := DecodeKey(string(text))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes key to path (mode 0600) atomically: a crash leaves
// the old file or the new one, never a torn one.
func WriteKeyFile(path string, key []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(EncodeKey(key) + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// LoadOrCreateKeyFile reads the key at path, creating it (0600, random) when
// create is set and the file does not exist.
func LoadOrCreateKeyFile(path string, create bool) ([]byte, error) {
	k, err := ReadKeyFile(path)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = NewKey()
	if err != nil {
		return nil, err
	}
	if err := WriteKeyFile(path, k); err != nil {
		return nil, fmt.Errorf("create config key file: %w", err)
	}
	return k, nil
}

// walkValues calls fn on every value of the file (not on nested buckets),
// with the bucket holding it, in buckets nested at any depth.
func walkValues(tx *bolt.Tx, fn func(b *bolt.Bucket, k, v []byte) error) error {
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		var nested [][]byte
		var keys, vals [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			if v == nil {
				nested = append(nested, bytes.Clone(k))
				return nil
			}
			keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		// Put during ForEach is not allowed: change values after it.
		for i := range keys {
			if err := fn(b, keys[i], vals[i]); err != nil {
				return err
			}
		}
		for _, n := range nested {
			if err := walk(b.Bucket(n)); err != nil {
				return err
			}
		}
		return nil
	}
	return tx.ForEach(func(name []byte, b *bolt.Bucket) error { return walk(b) })
}

// unlock checks the key against the file's canary and seals what is not yet
// sealed: a store from before encryption keeps every value, now sealed.
// It reports how many values it sealed.
func (s *Store) unlock() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if c := meta.Get(keyCanary); c != nil {
			plain, err := s.seal.open(c)
			if err != nil || !bytes.Equal(plain, canaryText) {
				return ErrWrongKey
			}
		}
		err = walkValues(tx, func(b *bolt.Bucket, k, v []byte) error {
			if sealed(v) {
				return nil
			}
			n++
			return b.Put(k, s.seal.seal(v))
		})
		if err != nil {
			return err
		}
		return meta.Put(keyCanary, s.seal.seal(canaryText))
	})
	return n, err
}

// RotateKey re-encrypts every value of the store under newKey in one
// transaction, and reports how many it re-encrypted. From then on the store
// uses newKey. Callers write newKey where the next Open finds it first
// (RotateKeyFile does it crash-safely).
func (s *Store) RotateKey(newKey []byte) (int, error) {
	next, err := newSealer(newKey)
	if err != nil {
		return 0, err
	}
	n := 0
	err = s.db.Update(func(tx *bolt.Tx) error {
		err := walkValues(tx, func(b *bolt.Bucket, k, v []byte) error {
			plain, err := s.seal.open(v)
			if err != nil {
				return fmt.Errorf("value %q: %w", k, err)
			}
			n++
			return b.Put(k, next.seal(plain))
		})
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return meta.Put(keyCanary, next.seal(canaryText))
	})
	if err != nil {
		return 0, fmt.Errorf("rotate config key: %w", err)
	}
	s.seal = next
	return n, nil
}

// encode marshals v as JSON and seals it.
func (s *Store) encode(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return s.seal.seal(raw), nil
}

// decode opens a sealed value and unmarshals it into v.
func (s *Store) decode(raw []byte, v any) error {
	plain, err := s.seal.open(raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(plain, v)
}

// putRaw seals raw bytes under key.
func (s *Store) putRaw(b *bolt.Bucket, key, raw []byte) error {
	return b.Put(key, s.seal.seal(raw))
}

// getRaw returns the opened value under key, nil when missing.
func (s *Store) getRaw(b *bolt.Bucket, key []byte) ([]byte, error) {
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	return s.seal.open(v)
}

// KeyFileName is the config key's file in the data dir when the operator
// names none.
const KeyFileName = "config.key"

// OpenWithKeyFile opens the store under dataDir with the key in keyPath,
// creating a random key there when the file is missing and create is set.
// A rotation that stopped between re-encrypting the store and replacing
// the key file left the new key in keyPath+".new": it is used, and put in
// place, when the old one no longer opens the store.
func OpenWithKeyFile(dataDir, keyPath string, create bool) (*Store, error) {
	key, err := LoadOrCreateKeyFile(keyPath, create)
	if err != nil {
		return nil, err
	}
	s, err := OpenWithKey(dataDir, key)
	if !errors.Is(err, ErrWrongKey) {
		return s, err
	}
	next, nerr := ReadKeyFile(keyPath + ".new")
	if nerr != nil {
		return nil, fmt.Errorf("%w (key file %s)", err, keyPath)
	}
	s, nerr = OpenWithKey(dataDir, next)
	if nerr != nil {
		return nil, fmt.Errorf("%w (key file %s, nor %s.new)", err, keyPath, keyPath)
	}
	if err := os.Rename(keyPath+".new", keyPath); err != nil {
		s.Close()
		return nil, fmt.Errorf("finish an interrupted key rotation: %w", err)
	}
	return s, nil
}

// RotateKeyFile re-encrypts the store under a fresh random key and puts it
// in keyPath, then rewrites the file so that no value sealed under the old
// key stays in a freed page; nothing else may use the store meanwhile. The new key is written to keyPath+".new" before the store
// changes and renamed over keyPath after, so a crash at any point leaves a
// key that opens the store (OpenWithKeyFile finds it).
func (s *Store) RotateKeyFile(keyPath string) (int, error) {
	key, err := NewKey()
	if err != nil {
		return 0, err
	}
	if err := WriteKeyFile(keyPath+".new", key); err != nil {
		return 0, fmt.Errorf("write new config key: %w", err)
	}
	n, err := s.RotateKey(key)
	if err != nil {
		os.Remove(keyPath + ".new")
		return 0, err
	}
	if err := os.Rename(keyPath+".new", keyPath); err != nil {
		return n, fmt.Errorf("put the new config key in place (it is in %s.new): %w", keyPath, err)
	}
	return n, s.compact()
}
