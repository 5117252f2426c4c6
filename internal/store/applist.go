package store

import (
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"paas/internal/paas"
)

// AppList and ServedSince are apps:list's reads: every app's entry, then
// when the serving release of the apps it details was made.
//
// Opening and decoding every app (each with its whole config) and the
// serving releases at each call was most of the cost of apps:list, so of
// the dashboard's app list and GET /api/v1/apps. What they decode is kept
// with the sealed bytes it came from and reused while the stored bytes are
// the same. Every write seals a value under a fresh random nonce (seal), so
// the same bytes are the same value: a change made by any writer reads at
// once, and no writer has to remember to invalidate anything.

// AppList returns every app's entry in a list of apps, sorted by name,
// without DeployedAt (ServedSince).
func (s *Store) AppList() ([]paas.AppEntry, error) {
	c := &s.list
	c.mu.Lock()
	defer c.mu.Unlock()
	apps := make(map[string]listedApp, len(c.apps))
	var out []paas.AppEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketApps).ForEach(func(k, v []byte) error {
			a, ok := c.apps[string(k)]
			if !ok || a.raw != string(v) {
				app := new(paas.App)
				if err := s.decode(v, app); err != nil {
					return fmt.Errorf("decode app %s: %w", k, err)
				}
				a = listedApp{raw: string(v), entry: paas.AppEntry{Name: app.Name, Owner: app.Owner,
					Access: app.Access, Current: app.Current, Stopped: app.Stopped}}
			}
			apps[a.entry.Name] = a
			e := a.entry
			e.Access = slices.Clone(e.Access)
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// Only the apps there are now stay: a deleted app's entry goes.
	c.apps = apps
	return out, nil
}

// ServedSince sets the DeployedAt of each of apps (entries of AppList)
// to when release Current of the app was made; zero when it has none.
func (s *Store) ServedSince(apps []paas.AppEntry) error {
	c := &s.list
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.served == nil {
		c.served = map[string]listedRelease{}
	}
	return s.db.View(func(tx *bolt.Tx) error {
		releases := tx.Bucket(bucketReleases)
		for i := range apps {
			e := &apps[i]
			e.DeployedAt = time.Time{}
			rb := releases.Bucket([]byte(e.Name))
			if rb == nil || e.Current == 0 {
				delete(c.served, e.Name)
				continue
			}
			v := rb.Get(itob(e.Current))
			if v == nil {
				delete(c.served, e.Name)
				continue
			}
			r, ok := c.served[e.Name]
			if !ok || r.raw != string(v) {
				rel := new(paas.Release)
				if err := s.decode(v, rel); err != nil {
					return fmt.Errorf("decode release v%d of %s: %w", e.Current, e.Name, err)
				}
				r = listedRelease{raw: string(v), created: rel.CreatedAt.UTC()}
				c.served[e.Name] = r
			}
			e.DeployedAt = r.created
		}
		// Only the apps there are now stay.
		for name := range c.served {
			if _, ok := c.apps[name]; !ok {
				delete(c.served, name)
			}
		}
		return nil
	})
}

// appList keeps what AppList and ServedSince decoded, by app name.
type appList struct {
	mu     sync.Mutex
	apps   map[string]listedApp
	served map[string]listedRelease // the serving release's
}

type listedApp struct {
	raw   string // the sealed value the entry was decoded from
	entry paas.AppEntry
}

type listedRelease struct {
	raw     string
	created time.Time
}
