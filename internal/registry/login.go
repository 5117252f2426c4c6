package registry

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// LoginUser is the user paasd, the builders and the Swarm nodes pull and
// push as.
const LoginUser = "paas"

// Files of Login.Dir.
const (
	PasswordFileName = "password" // the password, owner-only
	HTPasswdFileName = "htpasswd" // LoginUser:bcrypt hash, owner-only
)

// Login is the registry's one login, kept in Dir.
type Login struct {
	Dir      string
	User     string
	Password string
}

// HTPasswd is the path of the htpasswd file the registry checks logins
// against (Options.HTPasswd).
func (l *Login) HTPasswd() string { return filepath.Join(l.Dir, HTPasswdFileName) }

// LoadLogin reads the registry's login from dir, making it the first time: a
// random password (32 bytes, base64url) and its bcrypt hash, both files
// owner-only. The hash is made with bcrypt's minimum cost: the registry
// checks it on every request (a push or a pull is tens of them), and the
// cost only slows the guessing of a human's password, where this one has
// 256 random bits.
func LoadLogin(dir string) (*Login, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry login: %w", err)
	}
	l := &Login{Dir: dir, User: LoginUser}
	pwPath := filepath.Join(dir, PasswordFileName)
	b, err := os.ReadFile(pwPath)
	switch {
	case err == nil:
		l.Password = strings.TrimSpace(string(b))
		if l.Password == "" {
			return nil, fmt.Errorf("registry login: %s is empty", pwPath)
		}
	case errors.Is(err, os.ErrNotExist):
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		l.Password = base64.RawURLEncoding.EncodeToString(raw[:])
		if err := writeFileAtomic(pwPath, []byte(l.Password+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("registry login: %w", err)
		}
	default:
		return nil, fmt.Errorf("registry login: %w", err)
	}
	// The htpasswd file follows the password file (written again when it
	// does not match it, e.g. after an administrator changed the password).
	if line, err := os.ReadFile(l.HTPasswd()); err == nil {
		user, hash, ok := strings.Cut(strings.TrimSpace(string(line)), ":")
		if ok && user == l.User && bcrypt.CompareHashAndPassword([]byte(hash), []byte(l.Password)) == nil {
			return l, os.Chmod(l.HTPasswd(), 0o600)
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(l.Password), bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("registry login: %w", err)
	}
	if err := writeFileAtomic(l.HTPasswd(), []byte(l.User+":"+string(hash)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("registry login: %w", err)
	}
	return l, nil
}
