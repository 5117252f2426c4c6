package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/directory"
	"paas/internal/paas"
)

// Directory is the lookup auth needs from an LDAP directory.
type Directory interface {
	LookupKey(ctx context.Context, key string) (*directory.User, error)
}

var _ Directory = (*directory.Client)(nil)

// DefaultCacheTTL is how long a key the directory confirmed is trusted
// without asking again.
const DefaultCacheTTL = 60 * time.Second

// DirectoryKeys identifies keys from the local lists first (the admin keys
// file and ssh-keys:*, for the bootstrap admin and break-glass access), then
// from the directory.
//
// The outage policy: a key the directory confirmed less than TTL ago is
// trusted from memory, with its groups, without asking again, so it keeps
// working while the directory is down; after TTL it is asked again, and a
// key the directory no longer holds, or that cannot be checked, is refused.
// A key never confirmed is refused while the directory is down. So a user
// removed from the directory, or from a group, loses that access within TTL,
// and no lookup waits longer than the directory client's timeout.
type DirectoryKeys struct {
	local   *Keys
	dir     Directory
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	cache *identityCache // by normalized key
}

// pruneAt is the cache size from which expired entries are dropped.
const pruneAt = 1024

// identityCache keeps what the directory said of a key or a user for ttl.
type identityCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[string]cachedIdentity
}

type cachedIdentity struct {
	id paas.Identity
	at time.Time
}

func newIdentityCache(ttl time.Duration) *identityCache {
	return &identityCache{ttl: ttl, entries: map[string]cachedIdentity{}}
}

// get returns k's identity when it was put less than ttl before now.
func (c *identityCache) get(k string, now time.Time) (paas.Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, hit := c.entries[k]
	if !hit || now.Sub(e.at) >= c.ttl {
		return paas.Identity{}, false
	}
	return e.id, true
}

// put records id for k at now, dropping expired entries once there are many.
func (c *identityCache) put(k string, id paas.Identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= pruneAt {
		for key, e := range c.entries {
			if now.Sub(e.at) >= c.ttl {
				delete(c.entries, key)
			}
		}
	}
	c.entries[k] = cachedIdentity{id: id, at: now}
}

// drop forgets k (the directory no longer confirms it).
func (c *identityCache) drop(k string) {
	c.mu.Lock()
	delete(c.entries, k)
	c.mu.Unlock()
}

// NewDirectoryKeys returns keys identified by local, then by dir. ttl <= 0
// uses DefaultCacheTTL; timeout bounds one directory lookup.
func NewDirectoryKeys(local *Keys, dir Directory, ttl, timeout time.Duration, log *slog.Logger) *DirectoryKeys {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if timeout <= 0 {
		timeout = directory.DefaultTimeout
	}
	return &DirectoryKeys{local: local, dir: dir, timeout: timeout, log: log, now: time.Now, cache: newIdentityCache(ttl)}
}

// Identify returns who key belongs to; ok is false for a key no one holds or
// one the directory cannot confirm now.
func (d *DirectoryKeys) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	if id, ok, err := d.local.Identify(key); err != nil || ok {
		return id, ok, err
	}
	k := Normalize(key)
	now := d.now()
	if id, hit := d.cache.get(k, now); hit {
		return id, true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	u, err := d.dir.LookupKey(ctx, k)
	if err != nil {
		d.cache.drop(k)
		if !errors.Is(err, directory.ErrNotFound) {
			d.log.Warn("directory lookup failed; key refused", "fingerprint", gossh.FingerprintSHA256(key), "err", err)
		}
		return paas.Identity{}, false, nil
	}
	id := paas.Identity{Name: u.Name, Admin: u.Admin, Groups: u.Groups, Source: "ldap"}
	d.cache.put(k, id, now)
	return id, true, nil
}
