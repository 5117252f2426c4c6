package gitreceive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// The git operations behind git:sync and git:from-archive: they write an
// app's bare repository without a push. The caller holds the app's push
// lock. No argument reaches a shell: git runs with an argument vector, user
// input after "--" where git takes it there, and the transports git may use
// restricted by GIT_ALLOW_PROTOCOL.

// syncNS is where Fetch puts the remote's refs while it resolves one; they
// are removed before it returns.
const syncNS = "refs/paas-sync/"

// Fetched is what Fetch resolved.
type Fetched struct {
	Commit string
	// Branch is the remote branch the commit was taken from, "" for a tag
	// or a commit named by its hash.
	Branch string
}

// FetchOptions are one fetch from a remote repository.
type FetchOptions struct {
	URL string // already checked by the caller
	// Ref is a branch, a tag or a commit hash; "" takes Default, or the
	// remote's HEAD when it has no such branch.
	Ref     string
	Default string
	// Protocols are the transports git may use (GIT_ALLOW_PROTOCOL).
	Protocols []string
	Timeout   time.Duration
}

// Fetch brings a remote's branches and tags into the bare repository at
// repo and resolves opts.Ref there to a commit. Nothing under refs/heads
// changes.
func Fetch(ctx context.Context, repo string, opts FetchOptions) (Fetched, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	env := append(gitEnv(),
		"GIT_ALLOW_PROTOCOL="+strings.Join(opts.Protocols, ":"),
		"GIT_SSH_COMMAND=ssh -o BatchMode=yes -o ConnectTimeout=20",
	)
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + repo}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("git %s: %w: %s", args[0], err, lastLines(stderr.String(), 3))
		}
		return out, nil
	}
	defer func() {
		out, err := run("for-each-ref", "--format=delete %(refname)", syncNS)
		if err == nil && len(out) > 0 {
			cmd := exec.Command("git", "--git-dir="+repo, "update-ref", "--stdin")
			cmd.Env = gitEnv()
			cmd.Stdin = bytes.NewReader(out)
			cmd.Run()
		}
	}()
	fetch := []string{"-c", "fetch.recurseSubmodules=false", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", "--", opts.URL,
		"+refs/heads/*:" + syncNS + "heads/*", "+refs/tags/*:" + syncNS + "tags/*"}
	if _, err := run(fetch...); err != nil {
		return Fetched{}, fmt.Errorf("fetch %s: %w", opts.URL, err)
	}
	resolve := func(ref string) string {
		out, err := run("rev-parse", "--verify", "--quiet", "--end-of-options", ref+"^{commit}")
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if opts.Ref == "" {
		if c := resolve(syncNS + "heads/" + opts.Default); c != "" {
			return Fetched{Commit: c, Branch: opts.Default}, nil
		}
		if _, err := run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", opts.URL, "+HEAD:"+syncNS+"HEAD"); err != nil {
			return Fetched{}, fmt.Errorf("the remote has no branch %s and no HEAD: %w", opts.Default, err)
		}
		if c := resolve(syncNS + "HEAD"); c != "" {
			return Fetched{Commit: c}, nil
		}
		return Fetched{}, fmt.Errorf("the remote's HEAD is not a commit")
	}
	if c := resolve(syncNS + "heads/" + opts.Ref); c != "" {
		return Fetched{Commit: c, Branch: opts.Ref}, nil
	}
	if c := resolve(syncNS + "tags/" + opts.Ref); c != "" {
		return Fetched{Commit: c}, nil
	}
	if hexRef.MatchString(opts.Ref) {
		if c := resolve(opts.Ref); c != "" {
			return Fetched{Commit: c}, nil
		}
		// not reachable from a branch or tag: ask for it by hash
		if len(opts.Ref) == 40 {
			if _, err := run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", opts.URL, opts.Ref); err == nil {
				if c := resolve(opts.Ref); c != "" {
					return Fetched{Commit: c}, nil
				}
			}
		}
	}
	return Fetched{}, fmt.Errorf("%s has no branch, tag or commit %q", opts.URL, opts.Ref)
}

var hexRef = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// CommitDir commits the contents of dir on top of parent ("" for a first
// commit) in the bare repository at repo, without moving any branch, and
// returns the commit. changed is false when the tree equals parent's: no
// commit is made then and the parent is returned.
func CommitDir(ctx context.Context, repo, dir, parent, name, email, message string) (commit string, changed bool, err error) {
	index, err := os.CreateTemp("", "paas-index-")
	if err != nil {
		return "", false, err
	}
	index.Close()
	os.Remove(index.Name()) // git makes it; only the unique name is wanted
	defer os.Remove(index.Name())
	env := append(gitEnv(), "GIT_INDEX_FILE="+index.Name(),
		"GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
		"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email)
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"--git-dir=" + repo, "--work-tree=" + dir}, args...)...)
		cmd.Env = env
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, lastLines(stderr.String(), 3))
		}
		return strings.TrimSpace(string(out)), nil
	}
	// -f: a .gitignore in the archive does not leave its files out
	if _, err := run("", "add", "--all", "--force", "--", "."); err != nil {
		return "", false, err
	}
	tree, err := run("", "write-tree")
	if err != nil {
		return "", false, err
	}
	args := []string{"commit-tree", tree}
	if parent != "" {
		ptree, err := run("", "rev-parse", "--verify", "--end-of-options", parent+"^{tree}")
		if err != nil {
			return "", false, err
		}
		if ptree == tree {
			return parent, false, nil
		}
		args = append(args, "-p", parent)
	}
	commit, err = run(message, args...)
	if err != nil {
		return "", false, err
	}
	return commit, true, nil
}

// UpdateBranch moves branch of the bare repository at repo from old ("" when
// it must not exist yet) to commit, atomically: it fails when the branch
// moved meanwhile.
func UpdateBranch(ctx context.Context, repo, branch, commit, old string) error {
	if old == "" {
		old = ZeroSHA
	}
	cmd := exec.CommandContext(ctx, "git", "--git-dir="+repo, "update-ref", "-m", "paas", "--", "refs/heads/"+branch, commit, old)
	cmd.Env = gitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("move branch %s to %s: %w: %s", branch, commit, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CopyRefs copies the branches and tags of the bare repository from, with
// their objects, into the bare repository to (apps:clone).
func CopyRefs(ctx context.Context, from, to string) error {
	cmd := exec.CommandContext(ctx, "git", "--git-dir="+to, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
		from, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	cmd.Env = append(gitEnv(), "GIT_ALLOW_PROTOCOL=file")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copy the branches of %s: %w: %s", filepath.Base(from), err, lastLines(string(out), 3))
	}
	return nil
}

// BranchUpdatedAt is when branch of the bare repository at dir was last
// written (its ref file's time, else the packed refs'); zero when it does
// not exist.
func BranchUpdatedAt(dir, branch string) (time.Time, error) {
	commit, err := BranchCommit(dir, branch)
	if err != nil || commit == "" {
		return time.Time{}, err
	}
	for _, p := range []string{filepath.Join(dir, "refs", "heads", filepath.FromSlash(branch)), filepath.Join(dir, "packed-refs")} {
		fi, err := os.Stat(p)
		if err == nil {
			return fi.ModTime(), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return time.Time{}, err
		}
	}
	return time.Time{}, nil
}

// lastLines is the last n lines of s, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}
