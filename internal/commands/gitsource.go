package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"paas/internal/output"
	"paas/internal/paas"
)

// GitSources put code on an app's deploy branch from somewhere else than a
// push, holding the app's push lock as a push does, and deploy it the way a
// push lands: the release first, then the branch moved (a release whose
// branch could not be moved is taken back).
type GitSources interface {
	Sync(ctx context.Context, app string, who paas.Identity, opts SyncOptions, out io.Writer) error
	FromArchive(ctx context.Context, app string, who paas.Identity, opts ArchiveOptions, out io.Writer) error
}

// SyncOptions are one git:sync.
type SyncOptions struct {
	URL string // checked by CheckGitURL
	Ref string // branch, tag or commit; "" for the deploy branch (or the remote's HEAD)
	// Build deploys what was fetched; BuildIfChanges only when the deploy
	// branch moved.
	Build, BuildIfChanges bool
	// SkipDeployBranch keeps the deploy branch when a first sync names a
	// branch (Dokku makes it the deploy branch).
	SkipDeployBranch bool
	// Protocols are the transports git may use for URL.
	Protocols []string
}

// ArchiveOptions are one git:from-archive.
type ArchiveOptions struct {
	URL   string    // http(s) URL; "" reads Stdin
	Stdin io.Reader // the archive, when URL is ""
	Type  string    // tar, tar.gz, zip
	// Author of the commit made from the archive.
	Name, Email string
	// Local lets URL reach this machine's own addresses (loopback, link
	// local): administrators only, since paasd's own services listen there.
	Local bool
}

// ArchiveTypes are the archive formats git:from-archive reads (Dokku's).
var ArchiveTypes = []string{"tar", "tar.gz", "zip"}

func (p *Platform) gitCommands() []*Command {
	cmds := []*Command{
		{Name: "git:set", Args: "APP deploy-branch [BRANCH]", Help: "Set the branch whose pushes deploy (no value: back to main)", App: true, MinArgs: 1, Run: p.gitSet},
		{Name: "git:report", Args: "APP [--format json|--FLAG]", Help: "Show an app's git settings and deploy branch head", App: true, Flags: formatFlag, Run: p.gitReport},
	}
	if p.Sources != nil {
		cmds = append(cmds,
			&Command{Name: "git:sync", Args: "[--build|--build-if-changes] [--skip-deploy-branch] APP URL [REF]",
				Help: "Fetch a branch, tag or commit from a repository (https, http, ssh, git; file:// for administrators) onto the deploy branch; --build deploys it",
				App:  true, MinArgs: 1, Flags: map[string]bool{"--build": false, "--build-if-changes": false, "--skip-deploy-branch": false}, Run: p.gitSync},
			&Command{Name: "git:from-archive", Args: "[--archive-type tar|tar.gz|zip] APP URL|- [USER_NAME USER_EMAIL]",
				Help: "Commit the contents of an archive (from an http(s) URL, or stdin with -) to the deploy branch and deploy it",
				App:  true, MinArgs: 1, Flags: map[string]bool{"--archive-type": true}, TrailingDashDash: true, Run: p.gitFromArchive},
		)
	}
	return cmds
}

// ValidateBranch reports whether name may be a deploy branch: a valid git
// branch name that git cannot mistake for an option.
func ValidateBranch(name string) error {
	if name == "" || strings.HasPrefix(name, "-") || len(name) > 200 || plumbing.NewBranchReferenceName(name).Validate() != nil ||
		strings.ContainsAny(name, "\\ \t\n") || !utf8Printable(name) {
		return fmt.Errorf("invalid branch name %q", sanitize(name))
	}
	return nil
}

func utf8Printable(s string) bool { return sanitize(s) == s }

func (p *Platform) gitSet(_ context.Context, c *Call) error {
	key := c.Args[0]
	if len(c.Args) > 2 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[2:], " ")))
	}
	switch key {
	case "deploy-branch":
	case "keep-git-dir", "rev-env-var", "source-image", "archive-max-files", "archive-max-size":
		return fmt.Errorf("git:set %s is not supported by paas: only deploy-branch", key)
	default:
		return fmt.Errorf("unknown property %q: use deploy-branch", sanitize(key))
	}
	value := ""
	if len(c.Args) == 2 {
		value = c.Args[1]
		if err := ValidateBranch(value); err != nil {
			return err
		}
	}
	if _, err := p.Store.UpdateApp(c.App.Name, func(a *paas.App) error { a.DeployBranch = value; return nil }); err != nil {
		return err
	}
	if value == "" {
		output.Step(c.Out, "Unsetting deploy-branch (pushes to main deploy)")
	} else {
		output.Step(c.Out, "Setting deploy-branch to %s", value)
	}
	return nil
}

func (p *Platform) gitReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	a := c.App
	head, err := p.Repos.Head(a.Name, a.Branch())
	if err != nil {
		return err
	}
	updated := ""
	if t, err := p.Repos.UpdatedAt(a.Name, a.Branch()); err != nil {
		return err
	} else if !t.IsZero() {
		updated = strconv.FormatInt(t.Unix(), 10)
	}
	source := ""
	if a.DeploySource == "docker-image" {
		source = a.DeploySourceMetadata
	}
	// Dokku's keys, sorted as it prints them; paas never keeps .git in a
	// build, sets no GIT_REV and has no global deploy branch.
	return reportTrimmed(c, asJSON, false, a.Name+" git information", []kv{
		{"Git computed archive max files", fmt.Sprint(MaxArchiveFiles)},
		{"Git computed archive max size", fmt.Sprint(MaxArchiveSize)},
		{"Git computed deploy branch", a.Branch()},
		{"Git computed keep git dir", "false"},
		{"Git deploy branch", a.DeployBranch},
		{"Git global archive max files", ""},
		{"Git global archive max size", ""},
		{"Git global deploy branch", ""},
		{"Git global keep git dir", ""},
		{"Git keep git dir", ""},
		{"Git last updated at", updated},
		{"Git rev env var", ""},
		{"Git sha", head},
		{"Git source image", source},
	})
}

// Limits of git:from-archive, Dokku's defaults.
const (
	MaxArchiveFiles = 10000
	MaxArchiveSize  = 1 << 30
)

var (
	// scpLike is git's user@host:path form of an ssh URL.
	scpLike  = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:\s]`)
	hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$`)
)

// CheckGitURL decides whether id may fetch from raw and returns the
// transports git may use for it: https, http, ssh (ssh://, user@host:path)
// and git for everyone; file:// only for administrators, since it reads
// any repository on the server (another app's among them). Anything else
// (a plain path, ext::, an option) is refused.
func CheckGitURL(raw string, id paas.Identity) ([]string, error) {
	bad := func(why string) ([]string, error) {
		return nil, fmt.Errorf("repository URL %q: %s", sanitize(raw), why)
	}
	if raw == "" || strings.HasPrefix(raw, "-") || !utf8Printable(raw) || strings.ContainsAny(raw, " \t\n\\") {
		return bad("not a URL git may fetch from")
	}
	if scpLike.MatchString(raw) && !strings.Contains(raw, "://") {
		host := raw[strings.IndexByte(raw, '@')+1 : strings.IndexByte(raw, ':')]
		if strings.HasPrefix(host, "-") {
			return bad("invalid host")
		}
		return []string{"ssh"}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL")
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git":
		if !hostName.MatchString(u.Hostname()) || strings.HasPrefix(u.User.Username(), "-") {
			return bad("invalid host")
		}
		return []string{u.Scheme}, nil
	case "file":
		if !id.Admin {
			return bad("file:// reads repositories on the server itself: administrators only")
		}
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return bad("use file:///absolute/path")
		}
		return []string{"file"}, nil
	case "":
		return bad("use a URL: https://, http://, ssh://, git://, user@host:path (file:// for administrators)")
	default:
		return bad("scheme " + u.Scheme + " is not allowed: use https, http, ssh or git")
	}
}

var gitRef = regexp.MustCompile(`^[A-Za-z0-9._/+-]+$`)

// ValidateGitRef reports whether ref may name a branch, tag or commit of a
// remote: git's ref name rules, and nothing git could take for an option
// (--upload-pack=...).
func ValidateGitRef(ref string) error {
	if strings.HasPrefix(ref, "-") || len(ref) > 200 || !gitRef.MatchString(ref) || strings.Contains(ref, "..") ||
		strings.HasSuffix(ref, ".lock") || strings.HasSuffix(ref, "/") || strings.HasPrefix(ref, "/") || strings.Contains(ref, "//") ||
		plumbing.ReferenceName("refs/heads/"+ref).Validate() != nil {
		return fmt.Errorf("invalid git ref %q: give a branch, a tag or a commit hash", sanitize(ref))
	}
	return nil
}

func (p *Platform) gitSync(ctx context.Context, c *Call) error {
	if len(c.Args) > 2 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[2:], " ")))
	}
	if c.Has("--build") && c.Has("--build-if-changes") {
		return errors.New("give --build or --build-if-changes, not both")
	}
	protocols, err := CheckGitURL(c.Args[0], c.ID)
	if err != nil {
		return err
	}
	opts := SyncOptions{URL: c.Args[0], Build: c.Has("--build"), BuildIfChanges: c.Has("--build-if-changes"),
		SkipDeployBranch: c.Has("--skip-deploy-branch"), Protocols: protocols}
	if len(c.Args) == 2 {
		if err := ValidateGitRef(c.Args[1]); err != nil {
			return err
		}
		opts.Ref = c.Args[1]
	}
	return p.Sources.Sync(ctx, c.App.Name, c.ID, opts, c.Out)
}

func (p *Platform) gitFromArchive(ctx context.Context, c *Call) error {
	if len(c.Args) != 1 && len(c.Args) != 3 {
		return errors.New("give the archive (a URL, or - for stdin) and optionally USER_NAME USER_EMAIL")
	}
	opts := ArchiveOptions{Type: cmp.Or(c.Flags["--archive-type"], "tar"), Name: c.ID.Name, Email: c.ID.Name + "@paas"}
	if !slices.Contains(ArchiveTypes, opts.Type) {
		return fmt.Errorf("Invalid archive type %q, valid archive types include: %s", sanitize(opts.Type), strings.Join(ArchiveTypes, ", "))
	}
	switch src := c.Args[0]; {
	case src == "-" || src == "--":
		opts.Stdin = c.Stdin
	default:
		u, err := url.Parse(src)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !utf8Printable(src) {
			return fmt.Errorf("archive URL %q: use an http(s) URL, or - to read the archive from stdin", sanitize(src))
		}
		opts.URL, opts.Local = src, c.ID.Admin
	}
	if len(c.Args) == 3 {
		opts.Name, opts.Email = c.Args[1], c.Args[2]
		if err := validateAuthor(opts.Name, opts.Email); err != nil {
			return err
		}
	}
	return p.Sources.FromArchive(ctx, c.App.Name, c.ID, opts, c.Out)
}

// validateAuthor checks a commit author's name and email: git refuses
// angle brackets and newlines in them.
func validateAuthor(name, email string) error {
	for _, v := range []string{name, email} {
		if v == "" || len(v) > 200 || strings.ContainsAny(v, "<>\n\r\x00") || !utf8Printable(v) {
			return fmt.Errorf("invalid commit author %q <%s>", sanitize(name), sanitize(email))
		}
	}
	return nil
}
