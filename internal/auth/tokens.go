package auth

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"paas/internal/directory"
	"paas/internal/paas"
)

// Why a token is refused. Each is an error of Tokens.Identify; the API
// answers 401 to all of them alike and the audit log keeps which.
var (
	ErrBadToken          = errors.New("invalid token")
	ErrTokenExpired      = errors.New("token expired")
	ErrOtherInstallation = errors.New("token of another installation")
	ErrTokenUserGone     = errors.New("the token's user is no longer known")
)

// TokenPrefix starts every API token: "paas_INSTALLATION_ID_SECRET".
const TokenPrefix = "paas_"

// TokenStore is the part of the state store tokens are kept in.
type TokenStore interface {
	InstallationID() (string, error)
	AddToken(t *paas.Token) error
	Token(id string) (*paas.Token, error)
	Tokens(user string) ([]*paas.Token, error)
	RemoveToken(user, name string) error
	TouchToken(id string, at time.Time) error
}

// Tokens makes, lists, revokes and checks API tokens. A token is 32 random
// bytes; only their SHA-256 is stored, and compared in constant time. It
// names the installation (a token of another one is refused as such) and
// its own ID (the lookup key). At every use its user is looked up again
// (Users), so that a user who left loses their tokens.
type Tokens struct {
	store TokenStore
	users *Users
	now   func() time.Time
}

// NewTokens returns Tokens kept in store, whose users users finds.
func NewTokens(store TokenStore, users *Users) *Tokens {
	return &Tokens{store: store, users: users, now: time.Now}
}

// Create makes a token name for id, valid for ttl (0: no expiry), and
// returns it: the only time it is shown. id must be a user Users can look
// up again, as every use of the token will.
func (t *Tokens) Create(ctx context.Context, id paas.Identity, name string, ttl time.Duration) (string, *paas.Token, error) {
	if id.Via != "" && strings.HasPrefix(id.Via, "token") {
		// A token makes no token: a leaked one would otherwise outlive its
		// own revocation through the tokens it made.
		return "", nil, errors.New("tokens are made over SSH or in the dashboard, not with a token")
	}
	if _, ok, err := t.users.User(ctx, id.Name, id.Source); err != nil {
		return "", nil, err
	} else if !ok {
		return "", nil, t.users.unknown(id)
	}
	inst, err := t.store.InstallationID()
	if err != nil {
		return "", nil, err
	}
	idRaw := make([]byte, 8)
	secret := make([]byte, 32)
	if _, err := rand.Read(idRaw); err != nil {
		return "", nil, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(secret)
	now := t.now().UTC()
	tok := &paas.Token{ID: hex.EncodeToString(idRaw), Name: name, User: id.Name, Source: id.Source, Hash: sum[:], CreatedAt: now}
	if ttl > 0 {
		tok.ExpiresAt = now.Add(ttl)
	}
	if err := t.store.AddToken(tok); err != nil {
		return "", nil, err
	}
	return TokenPrefix + inst + "_" + tok.ID + "_" + base64.RawURLEncoding.EncodeToString(secret), tok, nil
}

// List returns user's tokens.
func (t *Tokens) List(user string) ([]*paas.Token, error) { return t.store.Tokens(user) }

// Revoke removes user's token name: it stops working at once.
func (t *Tokens) Revoke(user, name string) error { return t.store.RemoveToken(user, name) }

// LooksLikeToken reports whether s has the shape of a paas API token (of
// any installation).
func LooksLikeToken(s string) bool { return strings.HasPrefix(s, TokenPrefix) }

// Identify returns who token acts as: its user as they are now, with Via
// "token NAME". Every refusal is an error saying why.
func (t *Tokens) Identify(ctx context.Context, token string) (paas.Identity, error) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return paas.Identity{}, ErrBadToken
	}
	parts := strings.SplitN(rest, "_", 3)
	if len(parts) != 3 || len(parts[0]) != 12 || len(parts[1]) != 16 {
		return paas.Identity{}, ErrBadToken
	}
	inst, err := t.store.InstallationID()
	if err != nil {
		return paas.Identity{}, err
	}
	if parts[0] != inst {
		return paas.Identity{}, ErrOtherInstallation
	}
	// Strict: a secret spelled otherwise (other trailing bits in its last
	// character) is not the token that was shown.
	secret, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil || len(secret) != 32 {
		return paas.Identity{}, ErrBadToken
	}
	tok, err := t.store.Token(parts[1])
	if errors.Is(err, paas.ErrTokenNotFound) {
		return paas.Identity{}, ErrBadToken // revoked, or never made
	}
	if err != nil {
		return paas.Identity{}, err
	}
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], tok.Hash) != 1 {
		return paas.Identity{}, ErrBadToken
	}
	now := t.now()
	if !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt) {
		return paas.Identity{}, ErrTokenExpired
	}
	id, ok, err := t.users.User(ctx, tok.User, tok.Source)
	if err != nil {
		return paas.Identity{}, err
	}
	if !ok {
		return paas.Identity{}, fmt.Errorf("%w: %s", ErrTokenUserGone, tok.User)
	}
	if now.Sub(tok.LastUsedAt) >= time.Minute {
		// At most a write a minute per token: a busy client does not
		// write on every request.
		_ = t.store.TouchToken(tok.ID, now.UTC()) // best effort
	}
	id.Via = "token " + tok.Name
	return id, nil
}

// UserDirectory is the lookup by name Users needs from an LDAP directory.
type UserDirectory interface {
	LookupUser(ctx context.Context, name string) (*directory.User, error)
}

var _ UserDirectory = (*directory.Client)(nil)

// Users finds a user by name where their key was found: the admin keys
// file, ssh-keys:*, or the directory. The directory's answers are trusted
// for TTL, as DirectoryKeys trusts its keys: a user removed from the
// directory is refused within TTL, and no lookup waits longer than the
// timeout.
type Users struct {
	local   *Keys
	dir     UserDirectory // nil without a directory
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	cache *identityCache // by user name
}

// NewUsers returns Users found in local and, when dir is not nil, in dir.
func NewUsers(local *Keys, dir UserDirectory, ttl, timeout time.Duration, log *slog.Logger) *Users {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if timeout <= 0 {
		timeout = directory.DefaultTimeout
	}
	return &Users{local: local, dir: dir, timeout: timeout, log: log, now: time.Now, cache: newIdentityCache(ttl)}
}

// User returns the identity of name as source knows it now; ok is false
// when source no longer has them (or cannot say, for the directory).
func (u *Users) User(ctx context.Context, name, source string) (paas.Identity, bool, error) {
	// A link's session is the user of the key it was issued to.
	source = strings.TrimPrefix(source, paas.SourceWebLink+"/")
	switch source {
	case "admin-keys":
		admins, err := u.local.adminKeys()
		if err != nil {
			return paas.Identity{}, false, err
		}
		for _, n := range admins {
			if n == name {
				return paas.Identity{Name: name, Admin: true, Source: source}, true, nil
			}
		}
		return paas.Identity{}, false, nil
	case "ssh-keys":
		keys, err := u.local.store.Keys()
		if err != nil {
			return paas.Identity{}, false, err
		}
		for _, k := range keys {
			if k.Name == name {
				return paas.Identity{Name: name, Source: source}, true, nil
			}
		}
		return paas.Identity{}, false, nil
	case "ldap", paas.SourceWebPassword, paas.SourceWebOIDC:
		// A user who signed in on the web with a password is a directory
		// user; one who signed in at the OpenID provider is looked up in
		// the directory behind it (paas keeps no refresh token to ask the
		// provider again).
		return u.directoryUser(ctx, name)
	}
	return paas.Identity{}, false, nil
}

// unknown says why id cannot have a token: its user cannot be looked up.
func (u *Users) unknown(id paas.Identity) error {
	if u.dir == nil && id.Source == paas.SourceWebOIDC {
		return fmt.Errorf("no token for %s: a token's user is looked up again at each use, so that one who leaves loses their tokens, and a user of the OpenID provider is looked up in the directory (--ldap-url), which this installation has none of; make the token over SSH", id.Name)
	}
	return fmt.Errorf("no token for %s: a token's user is looked up again at each use, and %s does not know %s now", id.Name, cmp.Or(map[string]string{
		"admin-keys": "the admin keys file", "ssh-keys": "ssh-keys:list",
	}[strings.TrimPrefix(id.Source, paas.SourceWebLink+"/")], "the directory"), id.Name)
}

func (u *Users) directoryUser(ctx context.Context, name string) (paas.Identity, bool, error) {
	if u.dir == nil {
		return paas.Identity{}, false, nil
	}
	now := u.now()
	if id, hit := u.cache.get(name, now); hit {
		return id, true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	du, err := u.dir.LookupUser(ctx, name)
	if err != nil {
		u.cache.drop(name)
		if !errors.Is(err, directory.ErrNotFound) {
			u.log.Warn("directory lookup failed; token refused", "user", name, "err", err)
		}
		return paas.Identity{}, false, nil
	}
	id := paas.Identity{Name: du.Name, Admin: du.Admin, Groups: du.Groups, Source: "ldap"}
	u.cache.put(name, id, now)
	return id, true, nil
}
