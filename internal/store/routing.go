package store

import (
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

var (
	bucketRouting = []byte("routing") // app -> paas.Routing (certificate keys among them: the file is 0600)
	// bucketSettings (builds.go) holds installation-wide settings, the global domain among them
	keyGlobalDomain = []byte("global-domain")
	// keyMoreGlobalDomains holds the global domains after the first (a JSON list).
	keyMoreGlobalDomains = []byte("global-domains-more")
)

// Routing returns the app's routing settings; empty ones when it has none.
func (s *Store) Routing(app string) (*paas.Routing, error) {
	r := &paas.Routing{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRouting)
		if b == nil {
			return nil
		}
		v, ok, err := get[paas.Routing](s, b, []byte(app))
		if ok {
			r = v
		}
		return err
	})
	return r, err
}

// AllRouting returns every app's routing settings, by app.
func (s *Store) AllRouting() (map[string]*paas.Routing, error) {
	out := map[string]*paas.Routing{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRouting)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			r := new(paas.Routing)
			if err := s.decode(v, r); err != nil {
				return fmt.Errorf("decode routing of %s: %w", k, err)
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// UpdateRouting applies fn to the app's routing settings atomically. It
// refuses (ErrDomainTaken) a domain another app has, so that two commands
// racing for one name cannot both win. ErrAppNotFound when the app is gone.
func (s *Store) UpdateRouting(app string, fn func(*paas.Routing) error) (*paas.Routing, error) {
	var out *paas.Routing
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketApps).Get([]byte(app)) == nil {
			return paas.ErrAppNotFound
		}
		b, err := tx.CreateBucketIfNotExists(bucketRouting)
		if err != nil {
			return err
		}
		r, _, err := get[paas.Routing](s, b, []byte(app))
		if err != nil {
			return err
		}
		if r == nil {
			r = &paas.Routing{}
		}
		if err := fn(r); err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			if string(k) == app {
				return nil
			}
			var other paas.Routing
			if err := s.decode(v, &other); err != nil {
				return fmt.Errorf("decode routing of %s: %w", k, err)
			}
			for _, d := range r.Domains {
				if slices.Contains(other.Domains, d) {
					return fmt.Errorf("%w: %s", paas.ErrDomainTaken, d)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		out = r
		return s.put(b, []byte(app), r)
	})
	return out, err
}

// DeleteRouting forgets the app's routing settings.
func (s *Store) DeleteRouting(app string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRouting)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(app))
	})
}

// GlobalDomain returns the domain set by domains:set-global, "" when none.
func (s *Store) GlobalDomain() (string, error) {
	var d string
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSettings); b != nil {
			v, err := s.getRaw(b, keyGlobalDomain)
			d = string(v)
			return err
		}
		return nil
	})
	return d, err
}

// SetGlobalDomain records the global domain, the only one; "" clears them.
func (s *Store) SetGlobalDomain(domain string) error {
	if domain == "" {
		return s.SetGlobalDomains(nil)
	}
	return s.SetGlobalDomains([]string{domain})
}

// GlobalDomains returns the global domains, the one GlobalDomain returns
// first; none when none is set.
func (s *Store) GlobalDomains() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSettings)
		if b == nil {
			return nil
		}
		first, err := s.getRaw(b, keyGlobalDomain)
		if err != nil || len(first) == 0 {
			return err
		}
		out = []string{string(first)}
		if v := b.Get(keyMoreGlobalDomains); v != nil {
			var more []string
			if err := s.decode(v, &more); err != nil {
				return fmt.Errorf("decode global domains: %w", err)
			}
			out = append(out, more...)
		}
		return nil
	})
	return out, err
}

// SetGlobalDomains records the global domains (domains:set-global); none
// clears them.
func (s *Store) SetGlobalDomains(domains []string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSettings)
		if err != nil {
			return err
		}
		if len(domains) == 0 {
			if err := b.Delete(keyMoreGlobalDomains); err != nil {
				return err
			}
			return b.Delete(keyGlobalDomain)
		}
		if err := s.putRaw(b, keyGlobalDomain, []byte(domains[0])); err != nil {
			return err
		}
		if len(domains) == 1 {
			return b.Delete(keyMoreGlobalDomains)
		}
		return s.put(b, keyMoreGlobalDomains, domains[1:])
	})
}
