// Package auth maps SSH keys to identities (the admin keys file and keys added
// with ssh-keys:add) and decides what an identity may do to an app.
package auth

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/internal/paas"
)

// KeyStore is the part of the state store auth reads.
type KeyStore interface {
	Keys() ([]*paas.SSHKey, error)
}

// Keys identifies SSH keys. The admin keys file is re-read when it changes.
type Keys struct {
	adminFile string
	store     KeyStore

	mu        sync.Mutex
	adminMod  time.Time
	adminSize int64
	admins    map[string]string // fingerprint -> name
}

// NewKeys returns a Keys reading adminFile (an authorized_keys file) and store.
func NewKeys(adminFile string, store KeyStore) *Keys {
	return &Keys{adminFile: adminFile, store: store}
}

// Normalize returns the key as "type base64" without a comment, the form keys
// are stored and compared in.
func Normalize(key gossh.PublicKey) string {
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(key)))
}

// ParseKey parses one authorized_keys line (options and comment allowed).
func ParseKey(line []byte) (gossh.PublicKey, string, error) {
	key, comment, _, _, err := gossh.ParseAuthorizedKey(bytes.TrimSpace(line))
	if err != nil {
		return nil, "", fmt.Errorf("parse public key: %w", err)
	}
	return key, comment, nil
}

// Identify returns who key belongs to; ok is false for an unknown key.
func (k *Keys) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	fp := gossh.FingerprintSHA256(key)
	admins, err := k.adminKeys()
	if err != nil {
		return paas.Identity{}, false, err
	}
	if name, ok := admins[fp]; ok {
		return paas.Identity{Name: name, Admin: true, Source: "admin-keys"}, true, nil
	}
	keys, err := k.store.Keys()
	if err != nil {
		return paas.Identity{}, false, err
	}
	for _, sk := range keys {
		if sk.Fingerprint == fp {
			return paas.Identity{Name: sk.Name, Source: "ssh-keys"}, true, nil
		}
	}
	return paas.Identity{}, false, nil
}

func (k *Keys) adminKeys() (map[string]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.adminFile == "" {
		return nil, nil
	}
	fi, err := os.Stat(k.adminFile)
	if err != nil {
		if os.IsNotExist(err) {
			k.admins = nil
			return nil, nil
		}
		return nil, fmt.Errorf("read admin keys: %w", err)
	}
	if k.admins != nil && fi.ModTime().Equal(k.adminMod) && fi.Size() == k.adminSize {
		return k.admins, nil
	}
	data, err := os.ReadFile(k.adminFile)
	if err != nil {
		return nil, fmt.Errorf("read admin keys: %w", err)
	}
	admins := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		key, comment, err := ParseKey(line)
		if err != nil {
			continue // a bad line must not lock every admin out
		}
		name := "admin"
		if paas.ValidateKeyName(comment) == nil {
			name = comment
		}
		admins[gossh.FingerprintSHA256(key)] = name
	}
	k.admins, k.adminMod, k.adminSize = admins, fi.ModTime(), fi.Size()
	return admins, nil
}

// CanUseApp reports whether id may read and change app: admins, the app's
// owner, and the users and @groups of its access list may.
func CanUseApp(id paas.Identity, app *paas.App) bool {
	if id.Admin || (id.Name != "" && app.Owner == id.Name) {
		return true
	}
	for _, e := range app.Access {
		if g, ok := strings.CutPrefix(e, "@"); ok {
			if g != "" && slices.Contains(id.Groups, g) {
				return true
			}
		} else if id.Name != "" && e == id.Name {
			return true
		}
	}
	return false
}

// CanManageAccess reports whether id may change app's access list: admins
// and the owner may.
func CanManageAccess(id paas.Identity, app *paas.App) bool {
	return id.Admin || (id.Name != "" && app.Owner == id.Name)
}
