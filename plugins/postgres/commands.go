package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
)

var formatFlag = map[string]bool{"--format": true}

// Commands implements plugins.Commander.
func (p *Postgres) Commands() []plugins.Command {
	return []plugins.Command{
		{Name: "postgres:create", Args: "DB [--node NODE]", Help: "Create a Postgres database (a Swarm service with its data on a volume, kept on one node: this one, or NODE)", MinArgs: 1, Flags: map[string]bool{"--node": true}, Run: p.create},
		{Name: "postgres:info", Args: "DB", Help: "Show a database's service, node, status, links and backups", MinArgs: 1, Flags: formatFlag, Run: p.info},
		{Name: "postgres:list", Help: "List your Postgres databases", Flags: formatFlag, Run: p.list},
		{Name: "postgres:link", Args: "DB APP", Help: "Set the app's DATABASE_URL to the database and roll it out", MinArgs: 2, Run: p.link},
		{Name: "postgres:unlink", Args: "DB APP", Help: "Unset the app's DATABASE_URL and roll it out", MinArgs: 2, Run: p.unlink},
		{Name: "postgres:connect", Args: "DB", Help: "Run psql on the database, reading this session's input (interactive with ssh -t)", MinArgs: 1, Run: p.connect},
		{Name: "postgres:backup", Args: "DB", Help: "Write a pg_dump of the database (custom format) to stdout", MinArgs: 1, Run: p.backup},
		{Name: "postgres:restore", Args: "DB", Help: "Replace the database's contents with a dump read from stdin", MinArgs: 1, Run: p.restore},
		{Name: "postgres:backup-schedule", Args: "DB [\"MIN HOUR DOM MON DOW\"] [--keep N]", Help: "Back up on a cron schedule (UTC) into the data dir, keeping the newest N (7); without a schedule, show it", MinArgs: 1, Flags: map[string]bool{"--keep": true}, Run: p.backupSchedule},
		{Name: "postgres:backup-unschedule", Args: "DB", Help: "Stop scheduled backups (kept backups stay)", MinArgs: 1, Run: p.backupUnschedule},
		{Name: "postgres:backups", Args: "DB", Help: "List the kept backups of a database", MinArgs: 1, Flags: formatFlag, Run: p.backups},
		{Name: "postgres:destroy", Args: "DB --force", Help: "Destroy a database's service and data (refused while linked; backups are kept)", MinArgs: 1, Flags: map[string]bool{"--force": false}, Run: p.destroy},
	}
}

func wantJSON(c *plugins.Call) (bool, error) { return output.WantJSON(c.Flags["--format"]) }

func (p *Postgres) create(ctx context.Context, c *plugins.Call) error {
	name := c.Args[0]
	if err := validateName(name); err != nil {
		return err
	}
	defer p.lock(name)()
	pass, err := newPassword()
	if err != nil {
		return err
	}
	// The data volume is local to a node: the database is pinned to the
	// node it starts on, and the volume is named for this creation, so a
	// volume a destroy left on another node is never taken for its data.
	node, err := p.placement(ctx, c.Flags["--node"])
	if err != nil {
		return fmt.Errorf("create Postgres database %s: %w", name, err)
	}
	suffix, err := newSuffix()
	if err != nil {
		return err
	}
	db := &Database{Name: name, Owner: c.ID.Name, Password: pass, CreatedAt: p.now().UTC(), Links: []string{},
		Volume: p.serviceName(name) + "-" + suffix + "-data", Network: p.serviceName(name) + "-" + suffix + "-net"}
	raw, err := json.Marshal(db)
	if err != nil {
		return err
	}
	err = p.opts.Data.Update(name, func(old []byte) ([]byte, error) {
		if old != nil {
			// Do not tell apart a database one may not see from a name clash.
			return nil, fmt.Errorf("Postgres database %s already exists", name)
		}
		return raw, nil
	})
	if err != nil {
		return err
	}
	output.Step(c.Out, "Starting Postgres database %s on node %s", name, node.Description.Hostname)
	err = p.start(ctx, db, node.ID)
	if err == nil {
		output.Step(c.Out, "Setting up database %s", name)
		err = p.sql(ctx, db, "postgres", fmt.Sprintf("ALTER ROLE postgres PASSWORD '%s';\nCREATE DATABASE %s;\n", pass, ident(name)))
	}
	if err != nil {
		// Leave nothing behind: the name is free again.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if kept, _, serr := p.stop(cctx, db); serr != nil {
			p.log.Error("clean up failed database", "db", name, "err", serr)
		} else if kept != "" {
			p.log.Warn("the volume of a failed database stays on its node", "db", name, "volume", p.volumeOf(db), "node", kept)
		}
		p.opts.Data.Update(name, func([]byte) ([]byte, error) { return nil, nil })
		return fmt.Errorf("create Postgres database %s: %w", name, err)
	}
	p.log.Info("database created", "db", name, "owner", c.ID.Name, "node", node.Description.Hostname)
	output.Header(c.Out, "Postgres database %s created", name)
	output.Detail(c.Out, "Link it to an app: postgres:link %s APP", name)
	return nil
}

type infoJSON struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	CreatedAt time.Time `json:"created_at"`
	DSN       string    `json:"dsn"`
	Service   string    `json:"service"`
	Volume    string    `json:"volume"`
	// Node is the hostname of the node the database is pinned to (its
	// volume is there); NodeID its Swarm ID.
	Node      string   `json:"node"`
	NodeID    string   `json:"node_id"`
	Status    string   `json:"status"`
	Links     []string `json:"links"`
	Schedule  string   `json:"backup_schedule"`
	Keep      int      `json:"backup_keep"`
	BackupDir string   `json:"backup_dir"`
	Backups   int      `json:"backups"`
}

func (p *Postgres) describe(ctx context.Context, db *Database) (infoJSON, error) {
	kept, err := p.keptBackups(db.Name)
	if err != nil {
		return infoJSON{}, err
	}
	nodeID, err := p.pinnedNode(ctx, db.Name)
	if err != nil {
		return infoJSON{}, err
	}
	var node string
	if nodeID != "" {
		node = p.nodeName(ctx, nodeID)
	}
	return infoJSON{
		Name: db.Name, Owner: db.Owner, CreatedAt: db.CreatedAt, DSN: p.URL(db),
		Service: p.serviceName(db.Name), Volume: p.volumeOf(db), Node: node, NodeID: nodeID, Status: p.status(ctx, db.Name),
		Links: db.Links, Schedule: db.Schedule, Keep: keepOf(db), BackupDir: p.backupDir(db.Name), Backups: len(kept),
	}, nil
}

func keepOf(db *Database) int {
	if db.Keep > 0 {
		return db.Keep
	}
	return DefaultKeep
}

func (p *Postgres) info(ctx context.Context, c *plugins.Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	in, err := p.describe(ctx, db)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, in)
	}
	schedule := "none"
	if in.Schedule != "" {
		schedule = fmt.Sprintf("%s (UTC, keep %d)", in.Schedule, in.Keep)
	}
	fields := [][2]string{
		{"Owner", in.Owner},
		{"Created at", in.CreatedAt.Format(time.RFC3339)},
		{"Dsn", in.DSN},
		{"Service", in.Service},
		{"Volume", in.Volume},
		{"Node", nodeLine(in)},
		{"Status", in.Status},
		{"Links", strings.Join(in.Links, " ")},
		{"Backup schedule", schedule},
		{"Backups", fmt.Sprintf("%d in %s", in.Backups, in.BackupDir)},
	}
	output.Header(c.Out, "%s postgres service information", db.Name)
	for _, f := range fields {
		output.Detail(c.Out, "%-16s %s", f[0]+":", f[1])
	}
	return nil
}

// nodeLine says where the data is: the volume is local to the node, so the
// database never moves off it.
func nodeLine(in infoJSON) string {
	if in.NodeID == "" {
		return "unknown (the service is missing)"
	}
	return in.Node + " (pinned: its data volume is on that node)"
}

func (p *Postgres) list(ctx context.Context, c *plugins.Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	dbs, err := p.all()
	if err != nil {
		return err
	}
	var out []infoJSON
	for _, db := range dbs {
		if !canSee(c.ID, db) {
			continue
		}
		in, err := p.describe(ctx, db)
		if err != nil {
			return err
		}
		out = append(out, in)
	}
	if asJSON {
		if out == nil {
			out = []infoJSON{}
		}
		return output.JSON(c.Out, out)
	}
	output.Header(c.Out, "Postgres databases")
	for _, in := range out {
		fmt.Fprintf(c.Out, "%-20s %-10s %s\n", in.Name, in.Status, strings.Join(in.Links, " "))
	}
	return nil
}

func (p *Postgres) link(ctx context.Context, c *plugins.Call) error {
	name, appName := c.Args[0], c.Args[1]
	if _, err := p.get(c.ID, name); err != nil {
		return err
	}
	app, err := p.opts.Apps.App(c.ID, appName)
	if err != nil {
		return err
	}
	defer p.lock(name)()
	db, err := p.update(name, func(db *Database) error {
		if slices.Contains(db.Links, app.Name) {
			return fmt.Errorf("%s is already linked to %s", name, app.Name)
		}
		db.Links = append(db.Links, app.Name)
		return nil
	})
	if err != nil {
		return err
	}
	dsn := p.URL(db)
	output.Step(c.Out, "Linking %s to %s: setting DATABASE_URL", name, app.Name)
	err = p.opts.Apps.Link(ctx, app.Name, c.ID, "postgres:link "+name, p.networkOf(db), true, func(cfg map[string]string) error {
		if cur, ok := cfg["DATABASE_URL"]; ok && cur != dsn {
			return fmt.Errorf("%s already has a DATABASE_URL: unset it (config:unset %s DATABASE_URL) or unlink its database first", app.Name, app.Name)
		}
		cfg["DATABASE_URL"] = dsn
		return nil
	}, c.Out)
	if err != nil {
		p.update(name, func(db *Database) error {
			db.Links = slices.DeleteFunc(db.Links, func(a string) bool { return a == app.Name })
			return nil
		})
		return err
	}
	p.log.Info("database linked", "db", name, "app", app.Name)
	return nil
}

func (p *Postgres) unlink(ctx context.Context, c *plugins.Call) error {
	name, appName := c.Args[0], c.Args[1]
	db, err := p.get(c.ID, name)
	if err != nil {
		return err
	}
	app, err := p.opts.Apps.App(c.ID, appName)
	if err != nil {
		return err
	}
	if !slices.Contains(db.Links, app.Name) {
		return fmt.Errorf("%s is not linked to %s", name, app.Name)
	}
	defer p.lock(name)()
	dsn := p.URL(db)
	output.Step(c.Out, "Unlinking %s from %s: unsetting DATABASE_URL", name, app.Name)
	err = p.opts.Apps.Link(ctx, app.Name, c.ID, "postgres:unlink "+name, p.networkOf(db), false, func(cfg map[string]string) error {
		if cfg["DATABASE_URL"] == dsn {
			delete(cfg, "DATABASE_URL")
		}
		return nil
	}, c.Out)
	if err != nil {
		return err
	}
	_, err = p.update(name, func(db *Database) error {
		db.Links = slices.DeleteFunc(db.Links, func(a string) bool { return a == app.Name })
		return nil
	})
	return err
}

func (p *Postgres) connect(ctx context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	var tty *paas.Terminal
	if t, ok := c.Stdin.(interface{ Terminal() (*paas.Terminal, bool) }); ok {
		tty, _ = t.Terminal()
	}
	err = p.execIn(ctx, db, []string{"psql", "-X", "-U", "postgres", "-d", db.Name}, c.Stdin, c.Out, c.Err, tty)
	var ee *exitError
	if errors.As(err, &ee) {
		return fmt.Errorf("psql exited with status %d", ee.code)
	}
	return err
}

func (p *Postgres) backup(ctx context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	return p.dump(ctx, db, c.Out, c.Err)
}

// dump writes a pg_dump of db in the custom format to w.
func (p *Postgres) dump(ctx context.Context, db *Database, w, errw io.Writer) error {
	if err := p.exec(ctx, db, []string{"pg_dump", "-Fc", "-U", "postgres", "-d", db.Name}, nil, w, errw); err != nil {
		return fmt.Errorf("back up %s: %w", db.Name, err)
	}
	return nil
}

// restore loads the dump into a new database next to the old one and swaps
// them only when the whole dump loaded: a bad dump changes nothing.
func (p *Postgres) restore(ctx context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	defer p.lock(db.Name)()
	tmp := db.Name + "__restore"
	output.Step(c.Out, "Restoring %s from stdin", db.Name)
	if err := p.sql(ctx, db, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s;\nCREATE DATABASE %s;\n", ident(tmp), ident(tmp))); err != nil {
		return fmt.Errorf("restore %s: %w", db.Name, err)
	}
	err = p.exec(ctx, db, []string{"pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "-U", "postgres", "-d", tmp}, c.Stdin, c.Out, c.Err)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		p.sql(cctx, db, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %s;\n", ident(tmp)))
		return fmt.Errorf("restore %s failed, its contents are unchanged: %w", db.Name, err)
	}
	swap := fmt.Sprintf("DROP DATABASE %s WITH (FORCE);\nALTER DATABASE %s RENAME TO %s;\n", ident(db.Name), ident(tmp), ident(db.Name))
	if err := p.sql(ctx, db, "postgres", swap); err != nil {
		return fmt.Errorf("restore %s: %w", db.Name, err)
	}
	p.log.Info("database restored", "db", db.Name)
	output.Step(c.Out, "Restored %s", db.Name)
	return nil
}

func (p *Postgres) backupSchedule(_ context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	if len(c.Args) == 1 && !c.Has("--keep") {
		if db.Schedule == "" {
			fmt.Fprintf(c.Out, "%s has no backup schedule\n", db.Name)
			return nil
		}
		fmt.Fprintf(c.Out, "%s (UTC), keeping %d, in %s\n", db.Schedule, keepOf(db), p.backupDir(db.Name))
		return nil
	}
	spec := db.Schedule
	if len(c.Args) > 1 {
		spec = strings.Join(c.Args[1:], " ")
	}
	if spec == "" {
		return errors.New("give a schedule, e.g. \"0 3 * * *\"")
	}
	if _, err := parseSchedule(spec); err != nil {
		return err
	}
	keep := keepOf(db)
	if v, ok := c.Flags["--keep"]; ok {
		keep, err = strconv.Atoi(v)
		if err != nil || keep < 1 || keep > 1000 {
			return fmt.Errorf("--keep wants a number from 1 to 1000, got %q", v)
		}
	}
	defer p.lock(db.Name)()
	if _, err := p.update(db.Name, func(d *Database) error { d.Schedule, d.Keep = spec, keep; return nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Backing up %s on \"%s\" (UTC), keeping the newest %d in %s", db.Name, spec, keep, p.backupDir(db.Name))
	return nil
}

func (p *Postgres) backupUnschedule(_ context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	defer p.lock(db.Name)()
	if _, err := p.update(db.Name, func(d *Database) error { d.Schedule = ""; return nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Scheduled backups of %s stopped; kept backups stay in %s", db.Name, p.backupDir(db.Name))
	return nil
}

func (p *Postgres) backups(_ context.Context, c *plugins.Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	kept, err := p.keptBackups(db.Name)
	if err != nil {
		return err
	}
	if asJSON {
		if kept == nil {
			kept = []Backup{}
		}
		return output.JSON(c.Out, kept)
	}
	output.Header(c.Out, "%s backups in %s", db.Name, p.backupDir(db.Name))
	for _, b := range kept {
		fmt.Fprintf(c.Out, "%s  %10d  %s\n", b.Time.Format(time.RFC3339), b.Size, b.File)
	}
	return nil
}

func (p *Postgres) destroy(ctx context.Context, c *plugins.Call) error {
	db, err := p.get(c.ID, c.Args[0])
	if err != nil {
		return err
	}
	name := db.Name
	if !c.Has("--force") {
		return fmt.Errorf("destroying %s removes its service and its data (backups in %s are kept)\nrun `postgres:destroy %s --force` to confirm", name, p.backupDir(name), name)
	}
	defer p.lock(name)()
	if db, err = p.load(name); err != nil || db == nil {
		return plugins.NotFound("Postgres database", name)
	}
	if len(db.Links) > 0 {
		return fmt.Errorf("%s is linked to %s: run `postgres:unlink %s %s` first", name, strings.Join(db.Links, ", "), name, db.Links[0])
	}
	output.Step(c.Out, "Destroying Postgres database %s", name)
	keptOn, emptied, err := p.stop(ctx, db)
	if err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	if err := p.opts.Data.Update(name, func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		return err
	}
	p.log.Info("database destroyed", "db", name, "by", c.ID.Name)
	// Swarm cannot remove a volume on another node.
	switch {
	case keptOn != "" && emptied:
		output.Detail(c.Out, "Its data on node %s is deleted; the empty volume %s stays there (`docker volume rm %s` on that node)", keptOn, p.volumeOf(db), p.volumeOf(db))
	case keptOn != "":
		output.Detail(c.Out, "Its volume %s, with its data, stays on node %s: remove it there with `docker volume rm %s`", p.volumeOf(db), keptOn, p.volumeOf(db))
	}
	if kept, _ := p.keptBackups(name); len(kept) > 0 {
		output.Detail(c.Out, "%d backups kept in %s", len(kept), p.backupDir(name))
	}
	return nil
}
