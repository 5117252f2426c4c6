// Package plugins is where an installation adapts paas without forking it: hook
// points (triggers) around the pipeline and the commands, with Dokku's trigger
// names, and commands added by plugins.
//
// Two kinds of plugins use the same trigger points:
//   - Go plugins compiled into paasd (a value implementing Plugin, registered
//     at wiring time), which may also implement Hooker (triggers) and
//     Commander (commands such as postgres:create);
//   - executable plugins in a directory, one folder per plugin and one
//     executable per trigger (Dokku's layout: DIR/PLUGIN/TRIGGER), plus
//     commands in DIR/PLUGIN/subcommands/SUB, run directly, never through a
//     shell.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"paas/internal/paas"
)

// Trigger names. The arguments each one gets are listed in Triggers.
const (
	TriggerUserAuth          = "user-auth"
	TriggerPreReceiveApp     = "pre-receive-app"
	TriggerPostExtract       = "post-extract"
	TriggerPreBuild          = "pre-build"
	TriggerPostBuild         = "post-build"
	TriggerPreDeploy         = "pre-deploy"
	TriggerPostDeploy        = "post-deploy"
	TriggerPostConfigUpdate  = "post-config-update"
	TriggerPreDelete         = "pre-delete"
	TriggerPostDelete        = "post-delete"
	TriggerPostDomainsUpdate = "post-domains-update"
	TriggerPostAppRename     = "post-app-rename"
	TriggerPostAppClone      = "post-app-clone"
)

// TriggerDoc documents one trigger point.
type TriggerDoc struct {
	Name string
	Args string
	When string
	// Fails says what a non-zero exit (an error) does.
	Fails string
}

// Triggers lists every trigger point, in the order they fire during a push.
var Triggers = []TriggerDoc{
	{TriggerUserAuth, "USER COMMAND [ARGS...]", "before every SSH command, and before a received push is handled (COMMAND is git-receive-pack, ARGS the app)", "refuses the command or rejects the push with the plugin's message"},
	{TriggerPreReceiveApp, "APP COMMIT", "a push to the deploy branch arrived, before anything is done", "rejects the push; nothing changes"},
	{TriggerPostExtract, "APP BUILD_DIR COMMIT", "the commit is exported to BUILD_DIR (the plugin may change the files)", "rejects the push; nothing changes"},
	{TriggerPreBuild, "APP BUILD_DIR", "before the image is built", "rejects the push; nothing changes"},
	{TriggerPostBuild, "APP IMAGE", "the image is built and in the registry", "rejects the push; nothing changes"},
	{TriggerPreDeploy, "APP IMAGE VERSION", "before release VERSION is rolled out: by a push, git:from-image, rollback, a config change, ps:restart, ps:start or ps:scale (VERSION is then the current one)", "rejects the push or refuses the command; the previous release keeps serving"},
	{TriggerPostDeploy, "APP VERSION IMAGE", "release VERSION serves (after any of those)", "reported to the user; the release stays"},
	{TriggerPostConfigUpdate, "APP set|unset|clear KEY...", "config vars changed (and rolled out unless --no-restart): config:set, config:unset, config:clear, config:import (as set)", "reported to the user; the change stays"},
	{TriggerPreDelete, "APP", "apps:destroy, before anything is removed", "refuses the destroy; nothing changes"},
	{TriggerPostDelete, "APP", "apps:destroy removed the app", "reported to the user"},
	{TriggerPostDomainsUpdate, "APP add|remove DOMAIN...", "reserved for the domains commands, which fire it when an app's domains change", "reported to the user"},
	{TriggerPostAppRename, "OLD NEW", "apps:rename moved the app OLD to the name NEW (a plugin keeping app names renames its own)", "reported to the user; the rename stays"},
	{TriggerPostAppClone, "OLD NEW", "apps:clone made NEW from OLD", "reported to the user; the clone stays"},
}

// Stops reports whether a failure of trigger name stops what it guards: every
// pre-* trigger and user-auth stop at the first failing plugin; the others run
// every plugin and report all failures.
func Stops(name string) bool {
	return strings.HasPrefix(name, "pre-") || name == TriggerUserAuth
}

// The domain types a plugin sees are this package's names for paas's own:
// a plugin in another module cannot import paas/internal/..., and names them
// here instead (TestPluginOutsideTheModule builds one).
type (
	// Identity is who a key, a token or a session belongs to.
	Identity = paas.Identity
	// App is an app as the store holds it.
	App = paas.App
)

// ErrAppNotFound is what Apps.App's error matches for an app that does not
// exist or that the caller may not use.
var ErrAppNotFound = paas.ErrAppNotFound

// Plugin is a Go plugin compiled into paasd.
type Plugin interface {
	Name() string
	Description() string
}

// Event is one firing of a trigger.
type Event struct {
	Trigger string
	Args    []string
	// User is who caused it (the pusher, the command's caller); empty when paasd did.
	User Identity
	// Out is where the user reads the plugin's output (the push, the session).
	Out io.Writer
}

// HookFunc runs at a trigger; an error is handled as Triggers describes.
type HookFunc func(ctx context.Context, ev Event) error

// Hooker is a Go plugin that runs at trigger points.
type Hooker interface {
	Plugin
	Hooks() map[string]HookFunc
}

// Commander is a Go plugin that adds commands, named "PLUGIN:subcommand".
type Commander interface {
	Plugin
	Commands() []Command
}

// Runner is a Go plugin with background work (e.g. scheduled backups); Run
// returns when ctx ends.
type Runner interface {
	Plugin
	Run(ctx context.Context) error
}

// Command is a command a plugin adds. The dispatcher applies the same access
// checks as to built-in commands: Admin commands are refused to others, and
// with App the first argument must be an app the caller may use.
type Command struct {
	Name    string // "PLUGIN:subcommand"
	Args    string // usage, e.g. "DB APP"
	Help    string
	Flags   map[string]bool // flag -> takes a value
	App     bool
	Admin   bool
	MinArgs int
	Run     func(ctx context.Context, c *Call) error
}

// Call is one invocation of a plugin command.
type Call struct {
	ID    Identity
	App   *App     // with Command.App
	Args  []string // positional arguments (after the app)
	Flags map[string]string
	Stdin io.Reader
	Out   io.Writer
	Err   io.Writer
}

// Has reports whether flag was given.
func (c *Call) Has(flag string) bool { _, ok := c.Flags[flag]; return ok }

// Apps is what a plugin may do with apps, with the caller's rights.
type Apps interface {
	// App returns an app id may use; an app one may not use is reported
	// exactly like a missing one (an error matching ErrAppNotFound,
	// exit 20).
	App(id Identity, name string) (*App, error)
	// SetConfig changes the app's config through fn and rolls it out as a new
	// release (zero downtime) when the app runs.
	SetConfig(ctx context.Context, app string, who Identity, reason string, fn func(cfg map[string]string) error, out io.Writer) error
	// Link is SetConfig that also attaches the app's tasks to network
	// (a service's, e.g. a database's), or detaches them from it when
	// link is false, in the same release.
	Link(ctx context.Context, app string, who Identity, reason, network string, link bool, fn func(cfg map[string]string) error, out io.Writer) error
}

// Data is a plugin's own space in the store: keys to values, changed atomically.
type Data interface {
	Get(key string) ([]byte, error) // nil when missing
	// Update replaces key's value with what fn returns from the current one
	// (nil when missing); a nil result deletes the key; an error changes nothing.
	Update(key string, fn func(old []byte) ([]byte, error)) error
	List() (map[string][]byte, error)
}

// ErrNotFound is what a plugin returns for a thing of its own (a database)
// that does not exist or that the caller may not see: both read the same.
var ErrNotFound = errors.New("not found")

// NotFound returns an error reading "KIND NAME does not exist" matching ErrNotFound.
func NotFound(kind, name string) error {
	return fmt.Errorf("%s %s does not exist%w", kind, name, silent{ErrNotFound})
}

// silent wraps an error without adding to the message.
type silent struct{ err error }

func (s silent) Error() string { return "" }
func (s silent) Unwrap() error { return s.err }
