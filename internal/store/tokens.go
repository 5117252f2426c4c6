package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

var (
	bucketTokens      = []byte("tokens") // id -> paas.Token
	keyInstallationID = []byte("installation-id")
)

// ErrTokenExists is returned when a user already has a token of that name.
var ErrTokenExists = errors.New("a token of that name exists")

// InstallationID returns the installation's random identifier, made once:
// API tokens carry it, so a token of another installation is told apart
// from a forged one.
func (s *Store) InstallationID() (string, error) {
	var id string
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSettings); b != nil {
			v, err := s.getRaw(b, keyInstallationID)
			id = string(v)
			return err
		}
		return nil
	})
	if err != nil || id != "" {
		return id, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSettings)
		if err != nil {
			return err
		}
		if v, err := s.getRaw(b, keyInstallationID); err != nil || v != nil {
			id = string(v)
			return err
		}
		raw := make([]byte, 6)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		id = hex.EncodeToString(raw)
		return s.putRaw(b, keyInstallationID, []byte(id))
	})
	return id, err
}

// AddToken records t; ErrTokenExists when its user has a token of its name.
func (s *Store) AddToken(t *paas.Token) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTokens)
		if err != nil {
			return err
		}
		exists := false
		err = b.ForEach(func(_, v []byte) error {
			o, _, err := s.decodeToken(v)
			if err == nil && o.User == t.User && o.Name == t.Name {
				exists = true
			}
			return err
		})
		if err != nil {
			return err
		}
		if exists {
			return ErrTokenExists
		}
		return s.put(b, []byte(t.ID), t)
	})
}

// Token returns the token of id, ErrTokenNotFound when there is none.
func (s *Store) Token(id string) (*paas.Token, error) {
	var t *paas.Token
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return paas.ErrTokenNotFound
		}
		v, ok, err := get[paas.Token](s, b, []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return paas.ErrTokenNotFound
		}
		t = v
		return nil
	})
	return t, err
}

// Tokens returns user's tokens by name ("" for every user's).
func (s *Store) Tokens(user string) ([]*paas.Token, error) {
	var list []*paas.Token
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			t, _, err := s.decodeToken(v)
			if err != nil {
				return err
			}
			if user == "" || t.User == user {
				list = append(list, t)
			}
			return nil
		})
	})
	sort.Slice(list, func(i, j int) bool {
		if list[i].User != list[j].User {
			return list[i].User < list[j].User
		}
		return list[i].Name < list[j].Name
	})
	return list, err
}

// RemoveToken deletes user's token name; ErrTokenNotFound when there is none.
func (s *Store) RemoveToken(user, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return paas.ErrTokenNotFound
		}
		var id []byte
		err := b.ForEach(func(k, v []byte) error {
			t, _, err := s.decodeToken(v)
			if err == nil && t.User == user && t.Name == name {
				id = append([]byte(nil), k...)
			}
			return err
		})
		if err != nil {
			return err
		}
		if id == nil {
			return paas.ErrTokenNotFound
		}
		return b.Delete(id)
	})
}

// TouchToken records that the token id was used at.
func (s *Store) TouchToken(id string, at time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		t, ok, err := get[paas.Token](s, b, []byte(id))
		if err != nil || !ok {
			return err
		}
		t.LastUsedAt = at
		return s.put(b, []byte(id), t)
	})
}

func (s *Store) decodeToken(raw []byte) (*paas.Token, bool, error) {
	t := new(paas.Token)
	if err := s.decode(raw, t); err != nil {
		return nil, false, fmt.Errorf("decode token: %w", err)
	}
	return t, true, nil
}
