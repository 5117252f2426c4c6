// Package directory finds the owner of an SSH key in an LDAP directory
// (OpenLDAP with the openssh-lpk schema, or Active Directory) and the groups
// that user is in. It binds with a service account over one reused
// connection, with a timeout on every dial and request, and escapes every
// value it places in a filter.
package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// ErrNotFound means no entry of the directory holds the key.
var ErrNotFound = errors.New("key not in the directory")

// ErrUnavailable wraps every failure to reach or query the directory.
var ErrUnavailable = errors.New("directory unavailable")

// Defaults of the settings (OpenLDAP with openssh-lpk, groupOfNames or posixGroup).
const (
	DefaultUserFilter    = "(objectClass=ldapPublicKey)"
	DefaultKeyAttribute  = "sshPublicKey"
	DefaultNameAttribute = "uid"
	// {dn} is the user's DN, {name} the value of the name attribute; both are
	// escaped before they are put in.
	DefaultGroupFilter = "(|(&(objectClass=groupOfNames)(member={dn}))(&(objectClass=posixGroup)(memberUid={name})))"
	DefaultTimeout     = 3 * time.Second
)

// Config says where the directory is and how it is laid out.
type Config struct {
	URL           string // ldap://host:port or ldaps://host:port
	StartTLS      bool   // upgrade an ldap:// connection with StartTLS
	CAFile        string // PEM CAs to verify the server with (system roots when empty)
	BindDN        string
	BindPassword  string
	BaseDN        string // where users are searched
	GroupBaseDN   string // where groups are searched (BaseDN when empty)
	UserFilter    string // ANDed with (KeyAttribute=key)
	KeyAttribute  string
	NameAttribute string // the user name paas shows and ACLs hold (uid; sAMAccountName on AD)
	// GroupFilter finds the user's groups; "" uses DefaultGroupFilter, "-"
	// searches no groups (memberOf alone).
	GroupFilter string
	AdminGroup  string // DN of the group whose members are administrators
	Timeout     time.Duration
}

func (c *Config) setDefaults() {
	if c.UserFilter == "" {
		c.UserFilter = DefaultUserFilter
	}
	if c.KeyAttribute == "" {
		c.KeyAttribute = DefaultKeyAttribute
	}
	if c.NameAttribute == "" {
		c.NameAttribute = DefaultNameAttribute
	}
	if c.GroupFilter == "" {
		c.GroupFilter = DefaultGroupFilter
	}
	if c.GroupBaseDN == "" {
		c.GroupBaseDN = c.BaseDN
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case err != nil:
		return fmt.Errorf("ldap url %q: %w", c.URL, err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		return fmt.Errorf("ldap url %q: use ldap:// or ldaps://", c.URL)
	case u.Scheme == "ldaps" && c.StartTLS:
		return errors.New("StartTLS is for ldap:// URLs; ldaps:// is TLS already")
	case c.BaseDN == "":
		return errors.New("the LDAP base DN is required")
	}
	for _, dn := range []string{c.BaseDN, c.GroupBaseDN, c.BindDN, c.AdminGroup} {
		if dn == "" {
			continue
		}
		if _, err := ldap.ParseDN(dn); err != nil {
			return fmt.Errorf("invalid DN %q: %w", dn, err)
		}
	}
	for _, f := range []string{c.UserFilter, strings.NewReplacer("{dn}", "x", "{name}", "x").Replace(c.GroupFilter)} {
		if f == "" || f == "-" {
			continue
		}
		if _, err := ldap.CompileFilter(f); err != nil {
			return fmt.Errorf("invalid LDAP filter %q: %w", f, err)
		}
	}
	return nil
}

// User is the directory entry a key belongs to.
type User struct {
	DN     string
	Name   string
	Groups []string // group names (their cn, or first RDN value)
	Admin  bool     // member of the admin group
}

// Client queries one directory. It is safe for concurrent use.
type Client struct {
	cfg   Config
	tls   *tls.Config
	admin *ldap.DN

	mu       sync.Mutex
	conn     *ldap.Conn
	failedAt time.Time // last failed dial or bind
	failErr  error
}

// New checks cfg and returns a Client; it does not dial until the first lookup.
func New(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	c := &Client{cfg: cfg, tls: &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
	if cfg.CAFile != "" {
		pemData, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ldap CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ldap CA file %s holds no PEM certificate", cfg.CAFile)
		}
		c.tls.RootCAs = pool
	}
	if cfg.AdminGroup != "" {
		c.admin, _ = ldap.ParseDN(cfg.AdminGroup)
	}
	return c, nil
}

// Close drops the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	return nil
}

// connect returns the shared bound connection, dialling when there is none or
// it broke.
func (c *Client) connect(ctx context.Context) (*ldap.Conn, error) {
	waitFrom := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.conn.IsClosing() {
		return c.conn, nil
	}
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
	// A lookup that waited here while a dial failed fails with it instead of
	// dialling again: lookups queued behind dials to a dead directory would
	// otherwise each wait a full timeout in turn.
	if c.failErr != nil && c.failedAt.After(waitFrom) {
		return nil, c.failErr
	}
	conn, err := c.dial(ctx)
	if err != nil {
		c.failedAt, c.failErr = time.Now(), err
		return nil, err
	}
	c.failErr = nil
	c.conn = conn
	return conn, nil
}

// dial opens, secures and binds a new connection.
func (c *Client) dial(ctx context.Context) (*ldap.Conn, error) {
	conn, err := c.dialUnbound(ctx)
	if err != nil {
		return nil, err
	}
	if c.cfg.BindDN != "" {
		if err := conn.Bind(c.cfg.BindDN, c.cfg.BindPassword); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w: bind as %s: %w", ErrUnavailable, c.cfg.BindDN, err)
		}
	}
	return conn, nil
}

// dialUnbound opens and secures a new connection, not bound yet.
func (c *Client) dialUnbound(ctx context.Context) (*ldap.Conn, error) {
	timeout := c.cfg.Timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	dialer := &net.Dialer{Timeout: timeout}
	conn, err := ldap.DialURL(c.cfg.URL, ldap.DialWithDialer(dialer), ldap.DialWithTLSConfig(c.tls))
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrUnavailable, c.cfg.URL, err)
	}
	conn.SetTimeout(c.cfg.Timeout)
	if c.cfg.StartTLS {
		if err := conn.StartTLS(c.tls); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w: starttls: %w", ErrUnavailable, err)
		}
	}
	return conn, nil
}

// drop forgets conn when it is still the shared one.
func (c *Client) drop(conn *ldap.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn.Close()
		c.conn = nil
	}
}

// search runs req on the shared connection; a failure that is not an LDAP
// result (a broken connection) is retried once on a fresh one.
func (c *Client) search(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		conn, err := c.connect(ctx)
		if err != nil {
			return nil, err
		}
		res, err := conn.Search(req)
		if err == nil {
			return res, nil
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return &ldap.SearchResult{}, nil
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil {
			return res, nil // the caller sees more entries than it allows
		}
		lastErr = err
		c.drop(conn)
	}
	return nil, fmt.Errorf("%w: search: %w", ErrUnavailable, lastErr)
}

// Ping dials and binds (or reuses the connection), to check the settings.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.connect(ctx)
	return err
}

// LookupKey returns the user whose key attribute holds key ("type base64",
// no comment) with their groups; ErrNotFound when no entry holds it, or when
// more than one does (a key must identify one person).
func (c *Client) LookupKey(ctx context.Context, key string) (*User, error) {
	key = keyFields(key)
	if key == "" || strings.ContainsAny(key, "\x00\r\n") {
		return nil, ErrNotFound
	}
	filter := c.keyFilter(key)
	res, err := c.search(ctx, ldap.NewSearchRequest(c.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(c.cfg.Timeout/time.Second), false, filter,
		[]string{c.cfg.NameAttribute, c.cfg.KeyAttribute, "memberOf"}, nil))
	if err != nil {
		return nil, err
	}
	var matches []*ldap.Entry
	for _, e := range res.Entries {
		// The server matched; check again here, byte for byte, so that a
		// lenient matching rule never widens who a key belongs to.
		for _, v := range e.GetRawAttributeValues(c.cfg.KeyAttribute) {
			if keyFields(string(v)) == keyFields(key) {
				matches = append(matches, e)
				break
			}
		}
	}
	switch {
	case len(matches) == 0:
		return nil, ErrNotFound
	case len(matches) > 1:
		return nil, fmt.Errorf("%w: the key is on more than one entry", ErrNotFound)
	}
	return c.user(ctx, matches[0])
}

// user reads the entry e of a user with their groups.
func (c *Client) user(ctx context.Context, e *ldap.Entry) (*User, error) {
	u := &User{DN: e.DN, Name: e.GetAttributeValue(c.cfg.NameAttribute)}
	if u.Name == "" {
		return nil, fmt.Errorf("%w: entry %s has no %s", ErrNotFound, e.DN, c.cfg.NameAttribute)
	}
	groups := map[string]string{} // normalized DN -> name
	for _, dn := range e.GetAttributeValues("memberOf") {
		c.addGroup(groups, dn, "")
	}
	if c.cfg.GroupFilter != "-" {
		gf := c.groupFilter(u.DN, u.Name)
		gres, err := c.search(ctx, ldap.NewSearchRequest(c.cfg.GroupBaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, int(c.cfg.Timeout/time.Second), false, gf, []string{"cn"}, nil))
		if err != nil {
			return nil, err
		}
		for _, g := range gres.Entries {
			c.addGroup(groups, g.DN, g.GetAttributeValue("cn"))
		}
	}
	for dn, name := range groups {
		u.Groups = append(u.Groups, name)
		if c.admin != nil {
			if parsed, err := ldap.ParseDN(dn); err == nil && parsed.EqualFold(c.admin) {
				u.Admin = true
			}
		}
	}
	sort.Strings(u.Groups)
	u.Groups = compactSorted(u.Groups)
	return u, nil
}

// ErrBadPassword means the name and password do not sign in: no user of
// that name, or the directory refused the password. The two read alike, so
// that a sign-in form tells no one which names exist.
var ErrBadPassword = errors.New("wrong user name or password")

// Authenticate checks name's password by binding as that user's entry, on a
// connection of its own that is closed at once (the shared one stays bound
// as the service account). The entry is found by the name attribute under
// the user filter, with name escaped; the password is never kept. An empty
// password is refused before the directory sees it: a simple bind with
// none is an anonymous bind, which succeeds.
func (c *Client) Authenticate(ctx context.Context, name, password string) (*User, error) {
	if name == "" || password == "" || strings.ContainsAny(name+password, "\x00\r\n") || len(name) > 256 || len(password) > 1024 {
		return nil, ErrBadPassword
	}
	e, err := c.entryByName(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrBadPassword
	}
	if err != nil {
		return nil, err
	}
	conn, err := c.dialUnbound(ctx)
	if err != nil {
		return nil, err
	}
	err = conn.Bind(e.DN, password)
	conn.Close()
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return nil, ErrBadPassword
	}
	if err != nil {
		return nil, fmt.Errorf("%w: bind as %s: %w", ErrUnavailable, e.DN, err)
	}
	return c.user(ctx, e)
}

// keyFilter finds the entry holding key; key is escaped.
func (c *Client) keyFilter(key string) string {
	return fmt.Sprintf("(&%s(%s=%s))", c.cfg.UserFilter, c.cfg.KeyAttribute, ldap.EscapeFilter(key))
}

// groupFilter finds the groups of the user dn named name; both are escaped.
func (c *Client) groupFilter(dn, name string) string {
	return strings.NewReplacer("{dn}", ldap.EscapeFilter(dn), "{name}", ldap.EscapeFilter(name)).Replace(c.cfg.GroupFilter)
}

// addGroup records a group by DN, named by its cn or its first RDN value.
func (c *Client) addGroup(groups map[string]string, dn, cn string) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 {
		return
	}
	if cn == "" && len(parsed.RDNs[0].Attributes) > 0 {
		cn = parsed.RDNs[0].Attributes[0].Value
	}
	if cn == "" {
		return
	}
	groups[strings.ToLower(parsed.String())] = cn
}

func compactSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// keyFields is "type base64" of an authorized_keys-style value, comment dropped.
func keyFields(v string) string {
	f := strings.Fields(v)
	if len(f) < 2 {
		return strings.TrimSpace(v)
	}
	return f[0] + " " + f[1]
}

// LookupUser returns the user named name (the name attribute, under the
// user filter, name escaped) with their groups; ErrNotFound when no entry,
// or more than one, has that name. A browser session of a directory user
// is checked again with it.
func (c *Client) LookupUser(ctx context.Context, name string) (*User, error) {
	e, err := c.entryByName(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.user(ctx, e)
}

// entryByName finds the one entry named name; name is escaped.
func (c *Client) entryByName(ctx context.Context, name string) (*ldap.Entry, error) {
	if name == "" || len(name) > 256 || strings.ContainsAny(name, "\x00\r\n") {
		return nil, ErrNotFound
	}
	filter := fmt.Sprintf("(&%s(%s=%s))", c.cfg.UserFilter, c.cfg.NameAttribute, ldap.EscapeFilter(name))
	res, err := c.search(ctx, ldap.NewSearchRequest(c.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, int(c.cfg.Timeout/time.Second), false, filter, []string{c.cfg.NameAttribute, "memberOf"}, nil))
	if err != nil {
		return nil, err
	}
	var matches []*ldap.Entry
	for _, e := range res.Entries {
		if strings.EqualFold(e.GetAttributeValue(c.cfg.NameAttribute), name) {
			matches = append(matches, e)
		}
	}
	if len(matches) != 1 {
		return nil, ErrNotFound // none, or a name two entries share
	}
	return matches[0], nil
}

// GroupName is the name paas gives the group dn (its first RDN's value, the
// cn of "cn=admins,ou=groups,..."), as access lists and groups hold it; ""
// for a DN that does not parse.
func GroupName(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil || len(parsed.RDNs) == 0 || len(parsed.RDNs[0].Attributes) == 0 {
		return ""
	}
	return parsed.RDNs[0].Attributes[0].Value
}
