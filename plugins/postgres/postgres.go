// Package postgres is the Postgres service plugin: one Postgres server per
// database, run as a Swarm service with its data on a named volume, on an
// overlay network of its own; linked to apps through DATABASE_URL and that
// network (a config change, so a new release rolled out with zero downtime,
// whose tasks join the network: only linked apps reach it); backed up
// with pg_dump, streamed through SSH or kept on a schedule in the data dir.
//
// It is built only on the plugin interface (paas/plugins) that a third
// party's plugin would use: commands, a pre-delete trigger, background work.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"paas/internal/paas"
	"paas/plugins"
)

// DefaultImage is the image scripts/postgres/build.sh builds.
const DefaultImage = "paas-postgres:15"

// DefaultKeep is how many scheduled backups are kept per database.
const DefaultKeep = 7

// Options configures the plugin.
type Options struct {
	Docker DockerAPI
	// Name is the installation prefix: services and volumes are named
	// Name+"-pg-"+DB and labelled paas.installation=Name.
	Name string
	// Network is the installation's attachable overlay network.
	Network string
	// Image is the Postgres image (DefaultImage when empty).
	Image string
	// BackupDir holds scheduled backups, one folder per database.
	BackupDir string
	Apps      plugins.Apps
	Data      plugins.Data
	Log       *slog.Logger
	// ReadyTimeout bounds the wait for a new server (90s when zero).
	ReadyTimeout time.Duration
}

// Postgres is the plugin.
type Postgres struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu     sync.Mutex
	locks  map[string]*sync.Mutex
	nodeID string // this node's, once known (localNode)
}

var (
	_ plugins.Commander = (*Postgres)(nil)
	_ plugins.Hooker    = (*Postgres)(nil)
	_ plugins.Runner    = (*Postgres)(nil)
)

// New returns the plugin.
func New(opts Options) *Postgres {
	if opts.Image == "" {
		opts.Image = DefaultImage
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Postgres{opts: opts, log: opts.Log.With("component", "postgres"), now: time.Now, locks: map[string]*sync.Mutex{}}
}

// Name implements plugins.Plugin.
func (p *Postgres) Name() string { return "postgres" }

// Description implements plugins.Plugin.
func (p *Postgres) Description() string {
	return "Postgres databases as Swarm services, linked to apps, backed up"
}

// Database is one database as stored (the password is kept only here).
type Database struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	Password  string    `json:"password"`
	CreatedAt time.Time `json:"created_at"`
	Links     []string  `json:"links"`
	Schedule  string    `json:"schedule,omitempty"`
	Keep      int       `json:"keep,omitempty"`
	// Volume is the data volume, named at creation ("" for a database
	// created before: <name>-pg-<db>-data). It lives on the node the
	// service is pinned to.
	Volume string `json:"volume,omitempty"`
	// Network is the database's own network, which the apps linked to it
	// join ("" for a database created before: the installation's).
	Network string `json:"network,omitempty"`
}

var dbNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// maxDBName keeps "<name>-pg-<db>" within a DNS label (name is at most 20).
const maxDBName = 32

func validateName(name string) error {
	if len(name) > maxDBName || !dbNameRe.MatchString(name) {
		return fmt.Errorf("invalid database name %q: use lowercase letters, digits and dashes, starting with a letter or digit, at most %d characters", name, maxDBName)
	}
	return nil
}

func canSee(id paas.Identity, db *Database) bool { return id.Admin || db.Owner == id.Name }

// lock serializes the changes of one database.
func (p *Postgres) lock(name string) func() {
	p.mu.Lock()
	l, ok := p.locks[name]
	if !ok {
		l = &sync.Mutex{}
		p.locks[name] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (p *Postgres) load(name string) (*Database, error) {
	raw, err := p.opts.Data.Get(name)
	if err != nil || raw == nil {
		return nil, err
	}
	db := new(Database)
	if err := json.Unmarshal(raw, db); err != nil {
		return nil, fmt.Errorf("decode database %s: %w", name, err)
	}
	return db, nil
}

// get returns a database id may see; one id may not see reads as missing.
func (p *Postgres) get(id paas.Identity, name string) (*Database, error) {
	if err := validateName(name); err != nil {
		return nil, err
	}
	db, err := p.load(name)
	if err != nil {
		return nil, err
	}
	if db == nil || !canSee(id, db) {
		return nil, plugins.NotFound("Postgres database", name)
	}
	return db, nil
}

// update changes the stored database through fn atomically.
func (p *Postgres) update(name string, fn func(db *Database) error) (*Database, error) {
	var out *Database
	err := p.opts.Data.Update(name, func(old []byte) ([]byte, error) {
		if old == nil {
			return nil, plugins.NotFound("Postgres database", name)
		}
		db := new(Database)
		if err := json.Unmarshal(old, db); err != nil {
			return nil, err
		}
		if err := fn(db); err != nil {
			return nil, err
		}
		out = db
		return json.Marshal(db)
	})
	return out, err
}

func (p *Postgres) all() ([]*Database, error) {
	raw, err := p.opts.Data.List()
	if err != nil {
		return nil, err
	}
	out := make([]*Database, 0, len(raw))
	for k, v := range raw {
		db := new(Database)
		if err := json.Unmarshal(v, db); err != nil {
			return nil, fmt.Errorf("decode database %s: %w", k, err)
		}
		out = append(out, db)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// serviceName is the Swarm service, and the host name on the overlay network.
func (p *Postgres) serviceName(db string) string { return p.opts.Name + "-pg-" + db }
func (p *Postgres) volumeName(db string) string  { return p.opts.Name + "-pg-" + db + "-data" }

// URL is the DATABASE_URL apps get: the service name resolves on the overlay
// network (dnsrr) to the server's task; no TLS inside the overlay.
func (p *Postgres) URL(db *Database) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", db.Password),
		Host:     p.serviceName(db.Name) + ":5432",
		Path:     "/" + db.Name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func newPassword() (string, error) { return randomHex(24) }

// newSuffix names one creation of a database's volume and secret.
func newSuffix() (string, error) { return randomHex(3) }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Hooks implements plugins.Hooker: an app linked to a database cannot be
// destroyed until it is unlinked; a renamed app keeps its links.
func (p *Postgres) Hooks() map[string]plugins.HookFunc {
	return map[string]plugins.HookFunc{plugins.TriggerPreDelete: p.preDelete, plugins.TriggerPostAppRename: p.postAppRename}
}

// postAppRename (OLD NEW) renames the app in every database's links: its
// DATABASE_URL moved with the rest of its config.
func (p *Postgres) postAppRename(_ context.Context, ev plugins.Event) error {
	if len(ev.Args) != 2 {
		return nil
	}
	old, renamed := ev.Args[0], ev.Args[1]
	dbs, err := p.all()
	if err != nil {
		return err
	}
	for _, db := range dbs {
		if !slices.Contains(db.Links, old) {
			continue
		}
		unlock := p.lock(db.Name)
		_, err := p.update(db.Name, func(db *Database) error {
			for i, a := range db.Links {
				if a == old {
					db.Links[i] = renamed
				}
			}
			return nil
		})
		unlock()
		if err != nil {
			return fmt.Errorf("rename %s in the links of %s: %w", old, db.Name, err)
		}
	}
	return nil
}

func (p *Postgres) preDelete(_ context.Context, ev plugins.Event) error {
	if len(ev.Args) == 0 {
		return nil
	}
	app := ev.Args[0]
	dbs, err := p.all()
	if err != nil {
		return err
	}
	var linked []string
	for _, db := range dbs {
		if slices.Contains(db.Links, app) {
			linked = append(linked, db.Name)
		}
	}
	if len(linked) > 0 {
		return fmt.Errorf("%s is linked to Postgres database %s: run `postgres:unlink %s %s` first", app, linked[0], linked[0], app)
	}
	return nil
}
