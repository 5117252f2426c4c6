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
	ttl     time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey // by normalized key
}

// pruneAt is the cache size from which expired entries are dropped.
const pruneAt = 1024

type cachedKey struct {
	id paas.Identity
	at time.Time
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
	return &DirectoryKeys{local: local, dir: dir, ttl: ttl, timeout: timeout, log: log, now: time.Now, cache: map[string]cachedKey{}}
}

// Identify returns who key belongs to; ok is false for a key no one holds or
// one the directory cannot confirm now.
func (d *DirectoryKeys) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	if id, ok, err := d.local.Identify(key); err != nil || ok {
		return id, ok, err
	}
	k := Normalize(key)
	now := d.now()
	d.mu.Lock()
	c, hit := d.cache[k]
	d.mu.Unlock()
	if hit && now.Sub(c.at) < d.ttl {
		return c.id, true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	u, err := d.dir.LookupKey(ctx, k)
	if err != nil {
		d.mu.Lock()
		delete(d.cache, k)
		d.mu.Unlock()
		if !errors.Is(err, directory.ErrNotFound) {
			d.log.Warn("directory lookup failed; key refused", "fingerprint", gossh.FingerprintSHA256(key), "err", err)
		}
		return paas.Identity{}, false, nil
	}
	id := paas.Identity{Name: u.Name, Admin: u.Admin, Groups: u.Groups, Source: "ldap"}
	d.mu.Lock()
	if len(d.cache) >= pruneAt {
		for key, c := range d.cache {
			if now.Sub(c.at) >= d.ttl {
				delete(d.cache, key)
			}
		}
	}
	d.cache[k] = cachedKey{id: id, at: now}
	d.mu.Unlock()
	return id, true, nil
}
