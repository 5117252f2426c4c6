// Package paas holds the value types every part of the platform shares (apps,
// releases, images, process types) and the sentinel errors checked with errors.Is.
// It does no I/O and imports nothing of the project.
package paas

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors. Commands map them to Dokku's exit codes.
var (
	ErrAppNotFound = errors.New("app does not exist")
	ErrAppExists   = errors.New("app already exists")
	ErrInvalidName = errors.New("invalid app name")
	ErrInvalidKey  = errors.New("invalid config key")
	ErrKeyNotFound = errors.New("ssh key not found")
	ErrKeyExists   = errors.New("ssh key already exists")
	ErrForbidden   = errors.New("permission denied")
	ErrNoRelease   = errors.New("app has no release yet")
)

// Labels put on every Swarm object paas creates. The router reads them back, so
// they are the contract between the control plane and the data plane.
const (
	LabelInstallation = "paas.installation" // the --name prefix of the owning installation
	LabelApp          = "paas.app"
	LabelProcess      = "paas.process" // process type, e.g. "web"
	LabelRelease      = "paas.release" // release version number, decimal
	LabelPort         = "paas.port"    // container port the web process listens on
	LabelHosts        = "paas.hosts"   // comma-separated host names routed to this service
	LabelRole         = "paas.role"    // "app" or "router"
	// LabelRouted is "true" on the web service whose tasks receive traffic.
	// A new release's service gets it only once its tasks passed their
	// health checks; an old one loses it, and is drained, before it stops.
	LabelRouted = "paas.routed"
	// LabelDeployment names one rollout's set of services (all process
	// types of one release, at one formation): "v7-1a2b3c".
	LabelDeployment = "paas.deployment"
)

// WebProcess is the process type the router sends traffic to.
const WebProcess = "web"

// DefaultPort is the PORT an app's web process is told to listen on.
const DefaultPort = 5000

var (
	appNameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	configKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	keyNameRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]*$`)
)

// ValidateAppName reports whether name is a lowercase DNS label usable as an app
// name, a path element, a Swarm object name and a host name part.
func ValidateAppName(name string) error {
	if len(name) == 0 || len(name) > 63 || !appNameRe.MatchString(name) {
		return fmt.Errorf("%w %q: use lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters", ErrInvalidName, name)
	}
	return nil
}

// reservedAppNames name the installation's own repositories in its
// registry (NAME/router: the router's image; NAME/cnb-run: the buildpacks'
// run image): an app of that name would share one, and its destroy would
// remove the installation's images.
var reservedAppNames = map[string]bool{"router": true, "cnb-run": true, ControlAppName: true}

// ControlAppName is the name whose host, ControlAppName.DOMAIN, serves
// paasd's own HTTP API and dashboard through the router; no app takes it.
const ControlAppName = "paas"

// ValidateNewAppName is ValidateAppName for an app about to be created: the
// installation's reserved names are refused too.
func ValidateNewAppName(name string) error {
	if err := ValidateAppName(name); err != nil {
		return err
	}
	if reservedAppNames[name] {
		return fmt.Errorf("%w %q: the name is reserved by paas", ErrInvalidName, name)
	}
	return nil
}

// ValidateConfigKey reports whether key may be an environment variable name.
func ValidateConfigKey(key string) error {
	if !configKeyRe.MatchString(key) {
		return fmt.Errorf("%w %q: use letters, digits and underscores, not starting with a digit", ErrInvalidKey, key)
	}
	return nil
}

// ValidateConfigValue reports whether value may be the value of the
// environment variable key: text (UTF-8, which Docker's API and the release
// record carry unchanged) without a NUL byte (which ends a variable in a
// process's environment). Anything else would be stored altered or cut.
func ValidateConfigValue(key, value string) error {
	if !utf8.ValidString(value) {
		return fmt.Errorf("the value of %s is not UTF-8 text, which an environment variable must be", key)
	}
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("the value of %s contains a NUL byte, which an environment variable cannot hold", key)
	}
	return nil
}

// IsControl reports whether r is a control character: C0 (newline, tab,
// escape...), DEL, or C1 (U+0080-U+009F, such as the one-character CSI).
func IsControl(r rune) bool { return unicode.IsControl(r) }

// FirstControl returns the first control character of s, if it has one.
func FirstControl(s string) (rune, bool) {
	for _, r := range s {
		if IsControl(r) {
			return r, true
		}
	}
	return 0, false
}

// QuoteRune names a rune for a message: \n, \t, \x1b, \u009b.
func QuoteRune(r rune) string {
	q := strconv.QuoteRune(r)
	return q[1 : len(q)-1]
}

// ErrControlChar is wrapped by ValidateArg's error.
var ErrControlChar = errors.New("control character")

// ValidateArg reports whether a command argument (a name, a flag, a
// process type, a domain) is free of control characters: a newline, a tab,
// an escape or a C1 character in a name is never meant, and would be shown
// altered, or split, by whatever prints or parses it later. Only config
// values may hold them.
func ValidateArg(arg string) error {
	shown := arg
	if len(shown) > 40 {
		shown = strings.ToValidUTF8(shown[:40], "") + "…"
	}
	if !utf8.ValidString(arg) {
		return fmt.Errorf("argument %s is not UTF-8 text", strconv.Quote(shown))
	}
	if r, ok := FirstControl(arg); ok {
		return fmt.Errorf("argument %s holds a %w (%s): names and arguments cannot hold one", strconv.Quote(shown), ErrControlChar, QuoteRune(r))
	}
	return nil
}

// ValidateKeyName reports whether name may name an SSH key (a user).
func ValidateKeyName(name string) error {
	if len(name) > 64 || !keyNameRe.MatchString(name) {
		return fmt.Errorf("invalid key name %q: use letters, digits and . _ @ -, at most 64 characters", name)
	}
	return nil
}

// App is a deployable application.
type App struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	CreatedAt time.Time `json:"created_at"`
	// Config holds the environment, stored byte for byte.
	Config map[string]string `json:"config"`
	// ConfigVersion increases on every config change.
	ConfigVersion int `json:"config_version"`
	// Current is the version of the release that serves, 0 before the first deploy.
	Current int `json:"current"`
	// DeployBranch is the branch whose pushes deploy ("main" when empty).
	DeployBranch string `json:"deploy_branch,omitempty"`
	// Access lists who besides the owner may use the app: user names and
	// @group names (acl:add).
	Access []string `json:"access,omitempty"`
	// Formation is the number of tasks per process type set with ps:scale;
	// a process type not in it runs 1 task for web, 0 for the others.
	Formation map[string]int `json:"formation,omitempty"`
	// Stopped is set by ps:stop and cleared by ps:start and deploys.
	Stopped bool `json:"stopped,omitempty"`
	// Checks holds the checks:* settings.
	Checks CheckSettings `json:"checks,omitzero"`
	// Build holds the app's builder:set and buildpacks:set-property settings.
	Build BuildSettings `json:"build,omitzero"`
	// Locked (apps:lock) refuses deploys until apps:unlock.
	Locked bool `json:"locked,omitempty"`

	// DeploySource is how the serving release was made, as Dokku's
	// apps:report names it: "git" (a push, ps:rebuild), "git-sync",
	// "archive", "docker-image"; DeploySourceMetadata is the commit,
	// URL#commit or image.
	DeploySource         string `json:"deploy_source,omitempty"`
	DeploySourceMetadata string `json:"deploy_source_metadata,omitempty"`
	// RenamedFrom is the name an apps:rename moved the app from, until
	// the rename is complete (the old name's tasks, route and images gone),
	// so that a rename paasd did not see to the end is finished at start.
	RenamedFrom string `json:"renamed_from,omitempty"`
	// ProcfilePath (ps:set APP procfile-path) is where a push's Procfile is
	// read from, relative to the root of the commit; "" is Procfile.
	ProcfilePath string `json:"procfile_path,omitempty"`
	// Mounts are the app's storage mounts (storage:mount); every deploy,
	// rollback, restart, scale and run gets them.
	Mounts []Mount `json:"mounts,omitempty"`
	// StorageNode is the Swarm node ID the app is pinned to once it has
	// mounts: the node that holds its volumes, chosen at the first mount.
	StorageNode string `json:"storage_node,omitempty"`
	// Resources are the app's limits and reservations (resource:limit,
	// resource:reserve), applied by its next release.
	Resources ResourceSettings `json:"resources,omitzero"`
	// Network holds the app's networks (its own, network:set, linked
	// services'); every rollout and run gets them.
	Network NetworkSettings `json:"network,omitzero"`
}

// AppEntry is what a list of apps shows of an app (apps:list): who may use
// it and whether and since when a release serves.
type AppEntry struct {
	Name    string
	Owner   string
	Access  []string
	Current int
	Stopped bool
	// DeployedAt is when the serving release was made; zero when none, or
	// when the list was not asked for it (store.ServedSince).
	DeployedAt time.Time
}

// AppsSettings are the installation's app settings (`apps:set --global`).
type AppsSettings struct {
	// DisableAutocreation refuses a push to a missing app instead of
	// creating the app for the pusher.
	DisableAutocreation bool `json:"disable_autocreation,omitempty"`
}

// ErrAppLocked refuses a deploy of a locked app.
var ErrAppLocked = errors.New("app is locked: run apps:unlock to deploy it")

// CheckSettings are an app's checks:* settings.
type CheckSettings struct {
	Disabled bool              `json:"disabled,omitempty"` // checks:disable APP: every process type (Dokku's _all_)
	Skipped  bool              `json:"skipped,omitempty"`  // checks:skip APP: every process type
	Props    map[string]string `json:"props,omitempty"`    // checks:set: wait, timeout, attempts, initial-delay, wait-to-retire
	// Procs holds the states set for single process types (checks:disable
	// APP worker,clock): CheckDisabled, CheckSkipped or CheckEnabled, which
	// win over the app-wide Disabled and Skipped.
	Procs map[string]string `json:"procs,omitempty"`
}

// Limits of health check settings (checks:set and app.json), so that a typo
// cannot hold a deploy lock for hours.
const (
	MaxCheckAttempts = 100
	MaxCheckSeconds  = 600
)

// ScaleOf is the app's formation for procs: what ps:scale set, else 1 web
// task and none of the others.
func (a *App) ScaleOf(procs []ProcessType) map[string]int {
	scale := make(map[string]int, len(procs))
	for _, pt := range procs {
		n, ok := a.Formation[pt.Name]
		if !ok && pt.Name == WebProcess {
			n = 1
		}
		scale[pt.Name] = n
	}
	return scale
}

// DrainTimeout is how long the app's old tasks get to finish their
// requests before they are stopped: checks:set wait-to-retire, 30 s by
// default.
func (a *App) DrainTimeout() time.Duration {
	if n, err := strconv.Atoi(a.Checks.Props["wait-to-retire"]); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 30 * time.Second
}

// CheckProps are the properties checks:set accepts, with what they mean.
var CheckProps = map[string]string{
	"attempts":       "attempts of each check before the release is refused",
	"timeout":        "seconds one attempt may take",
	"wait":           "seconds between attempts",
	"initial-delay":  "seconds before the first attempt",
	"wait-to-retire": "seconds the old release gets to finish its requests before it is stopped",
}

// Builders an app may select with builder:set APP selected NAME.
const (
	BuilderDockerfile = "dockerfile"
	BuilderPack       = "pack"
)

// BuildSettings choose how an app's pushes are built. Empty fields fall back
// to the global settings, then to detection and the default builder.
type BuildSettings struct {
	Selected string `json:"selected,omitempty"`  // "dockerfile", "pack", "" (detect)
	Stack    string `json:"stack,omitempty"`     // CNB builder image
	BuildEnv string `json:"build_env,omitempty"` // "true": config vars reach the build
}

// Merge returns s with its empty fields taken from global.
func (s BuildSettings) Merge(global BuildSettings) BuildSettings {
	if s.Selected == "" {
		s.Selected = global.Selected
	}
	if s.Stack == "" {
		s.Stack = global.Stack
	}
	if s.BuildEnv == "" {
		s.BuildEnv = global.BuildEnv
	}
	return s
}

// Branch returns the deploy branch.
func (a *App) Branch() string {
	if a.DeployBranch == "" {
		return "main"
	}
	return a.DeployBranch
}

// Image is a built image as stored in a registry, addressed by digest.
type Image struct {
	Repository string `json:"repository"` // e.g. 127.0.0.1:5001/paas/hello
	Digest     string `json:"digest"`     // sha256:...
	// CNB: the image was built by Cloud Native Buildpacks; each process type
	// runs through the launcher as /cnb/process/TYPE.
	CNB bool `json:"cnb,omitempty"`
	// Builder says what made the image: "dockerfile", "pack BUILDER", "image SOURCE".
	Builder string `json:"builder,omitempty"`
	// EnvExec: the image has paas's env wrapper (EnvExecCommand) as its
	// entrypoint, so its tasks read their config from a file (a Swarm
	// secret) rather than from the container's environment, which
	// `docker inspect` shows.
	EnvExec bool `json:"env_exec,omitempty"`
}

// The env wrapper: paasd itself, in a layer of its own appended to every
// app image, run as `paasd env-exec -- COMMAND...`. It reads the config
// from EnvSecretPath (a Swarm secret, for services) or EnvCopyPath (copied
// into a one-off container before it starts), adds it to the environment
// and execs COMMAND.
const (
	EnvExecPath   = "/.paas/paasd"
	EnvSecretPath = "/run/secrets/paas-env"
	EnvCopyDir    = "/.paas"
	EnvCopyPath   = "/.paas/env"
)

// EnvExecCommand is the entrypoint prefix that runs a command through the
// env wrapper.
func EnvExecCommand() []string { return []string{EnvExecPath, "env-exec", "--"} }

// Ref is the pullable reference repository@digest.
func (i Image) Ref() string { return i.Repository + "@" + i.Digest }

// ProcessType is one line of a Procfile; an empty Command means the image's own
// entrypoint and command.
type ProcessType struct {
	Name    string `json:"name"`
	Command string `json:"command,omitempty"`
}

// Release is an immutable record of what runs: one image, one config snapshot.
type Release struct {
	App     string            `json:"app"`
	Version int               `json:"version"`
	Image   Image             `json:"image"`
	Config  map[string]string `json:"config"`
	// Global is the installation's config (config:set --global) when the
	// release was made: every key the app's own Config lacks.
	Global        map[string]string `json:"global,omitempty"`
	ConfigVersion int               `json:"config_version"`
	Processes     []ProcessType     `json:"processes"`
	Scale         map[string]int    `json:"scale"`
	Commit        string            `json:"commit,omitempty"`
	Author        string            `json:"author"`
	Reason        string            `json:"reason"` // "push", "config:set", ...
	CreatedAt     time.Time         `json:"created_at"`
	// Deploy is the ID of the deploy record that rolled the release out,
	// so a restart can tell which open deploy a serving release belongs to.
	Deploy int `json:"deploy,omitempty"`
	// Checks are the health checks of app.json at the release's commit, by
	// process type.
	Checks map[string][]HealthCheck `json:"checks,omitempty"`
	// Cron are the cron tasks of app.json at the release's commit (or in
	// the image's working directory): they run while the release is the
	// current one, so a rollback rolls the schedule back too.
	Cron []CronTask `json:"cron,omitempty"`
	// Mounts and Node are the app's storage mounts and the node they pin
	// it to when the release was rolled out: set from the app at every
	// rollout, as Scale is, so a rollback keeps the app's current mounts.
	Mounts []Mount `json:"mounts,omitempty"`
	Node   string  `json:"node,omitempty"`
	// Networks are the networks its tasks joined when it was rolled out,
	// the app's own first (set from the app at every rollout, as Mounts);
	// empty: the installation's network (a release made before apps had
	// networks of their own).
	Networks []string `json:"networks,omitempty"`
	// Resources and GlobalResources are the app's and the installation's
	// resource settings when the release was made (ResourcesOf).
	Resources       ResourceSettings `json:"resources,omitzero"`
	GlobalResources ResourceSettings `json:"global_resources,omitzero"`
}

// ResourcesOf returns the limits and reservations of process's tasks.
func (r *Release) ResourcesOf(process string) ProcessResources {
	return EffectiveResources(r.Resources, r.GlobalResources, process)
}

// CronTask is one entry of app.json's "cron", with Dokku's fields, and
// the ID paas gives it (stable while its command and schedule stay).
type CronTask struct {
	ID       string `json:"id"`
	Command  string `json:"command"`
	Schedule string `json:"schedule"`
	// Maintenance: the task is not run on schedule (app.json's own
	// setting; cron:suspend sets it outside app.json).
	Maintenance bool `json:"maintenance,omitempty"`
}

// HealthCheck is one entry of app.json's "healthchecks", with Dokku's
// fields. Durations are in seconds.
type HealthCheck struct {
	Type         string `json:"type,omitempty"` // startup (default), readiness or liveness: all gate a rollout here
	Name         string `json:"name,omitempty"`
	Path         string `json:"path,omitempty"`    // "/" when empty
	Content      string `json:"content,omitempty"` // must appear in the response body
	Port         int    `json:"port,omitempty"`    // the release's PORT when 0
	Attempts     int    `json:"attempts,omitempty"`
	Timeout      int    `json:"timeout,omitempty"`
	Wait         int    `json:"wait,omitempty"` // between attempts
	InitialDelay int    `json:"initialDelay,omitempty"`
	// AnyAnswer accepts any HTTP status below 500: the default check, that
	// the web process listens on PORT and answers.
	AnyAnswer bool `json:"-"`
}

// DefaultCheck is the check of a web process without app.json checks.
func DefaultCheck() HealthCheck {
	return HealthCheck{Name: "default", Path: "/", Attempts: 30, Timeout: 5, Wait: 1, AnyAnswer: true}
}

// Env returns the environment a process of this release runs with: the
// global config vars, the app's (which win), plus PORT, sorted for stable
// service specs.
func (r *Release) Env() []string {
	cfg := r.Merged()
	env := make([]string, 0, len(cfg)+1)
	for _, k := range SortedKeys(cfg) {
		if k != "PORT" {
			env = append(env, k+"="+cfg[k])
		}
	}
	return append(env, "PORT="+r.Port())
}

// Merged is the release's config over the global config it was made with.
func (r *Release) Merged() map[string]string { return MergeConfig(r.Global, r.Config) }

// Port returns the port the web process listens on.
func (r *Release) Port() string {
	if p := r.Merged()["PORT"]; p != "" {
		return p
	}
	return fmt.Sprint(DefaultPort)
}

// MergeConfig returns app's config vars over global's: what an app's
// processes see (Dokku's --merged).
func MergeConfig(global, app map[string]string) map[string]string {
	out := make(map[string]string, len(global)+len(app))
	for k, v := range global {
		out[k] = v
	}
	for k, v := range app {
		out[k] = v
	}
	return out
}

// Terminal is the terminal an SSH client asked for (ssh -t).
type Terminal struct {
	Term          string
	Width, Height int
	// Resize delivers the new width and height when the window changes; it
	// is closed when the session ends.
	Resize <-chan [2]int
}

// Identity is who a key belongs to.
type Identity struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
	// Groups are the directory groups of an LDAP user (names, e.g. a cn).
	Groups []string `json:"groups,omitempty"`
	// Source is where the key was found: "admin-keys", "ssh-keys" or "ldap";
	// for a web session, how it signed in (SourceWebOIDC, SourceWebPassword,
	// or SourceWebLink + "/" + the source of the key a link was issued to).
	Source string `json:"source,omitempty"`
	// Via is the door a request came through when it is not SSH: "token
	// NAME" (an API token), "web" (a browser session). The audit log
	// records it with the event.
	Via string `json:"via,omitempty"`
}

// Sources of the identities of web sessions (Identity.Source).
const (
	SourceWebOIDC     = "web-oidc"     // at the OpenID provider
	SourceWebPassword = "web-password" // with a directory password
	SourceWebLink     = "web-link"     // with a link of `ssh paas login`
)

// Token is an API token of a user (tokens:create): its secret is never
// stored, only its SHA-256.
type Token struct {
	// ID is the public part of the token, by which it is found.
	ID   string `json:"id"`
	Name string `json:"name"`
	// User and Source are the identity the token acts as; the user is
	// looked up again at every use (a user who left loses their tokens).
	User   string `json:"user"`
	Source string `json:"source"`
	// Hash is the SHA-256 of the token's secret part.
	Hash      []byte    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// LastUsedAt is when the token last authenticated a request.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// ErrTokenNotFound is returned for a token name a user does not have.
var ErrTokenNotFound = errors.New("token not found")

// SSHKey is a user key added with ssh-keys:add.
type SSHKey struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"` // SHA256:...
	Key         string    `json:"key"`         // "type base64", no comment
	AddedBy     string    `json:"added_by"`
	AddedAt     time.Time `json:"added_at"`
}

// Deploy states.
const (
	DeployRunning   = "running"
	DeploySucceeded = "succeeded"
	DeployFailed    = "failed"
)

// Deploy records one run of the pipeline.
type Deploy struct {
	ID         int       `json:"id"`
	App        string    `json:"app"`
	Commit     string    `json:"commit,omitempty"`
	Reason     string    `json:"reason"`
	Author     string    `json:"author"`
	Builder    string    `json:"builder,omitempty"`
	State      string    `json:"state"`
	Error      string    `json:"error,omitempty"`
	Release    int       `json:"release,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Log        string    `json:"log,omitempty"`
}

// SortedKeys returns the keys of m in order, for stable specs and output.
func SortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Event is one line of the audit log: who did what to which app, when, with
// what result. It never holds a config value.
type Event struct {
	ID     int       `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`            // identity name
	Source string    `json:"source,omitempty"` // where the actor's key was found
	Via    string    `json:"via,omitempty"`    // "token NAME" or "web" when not SSH
	App    string    `json:"app,omitempty"`
	Action string    `json:"action"`         // a command name, "push", "deploy", "rollback"
	Args   []string  `json:"args,omitempty"` // arguments, config values removed
	Result string    `json:"result"`         // "ok", "error", "not-found"
	Code   int       `json:"code"`           // exit code
	Detail string    `json:"detail,omitempty"`
}
