package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"paas/gitreceive"
	"paas/internal/applock"
	"paas/internal/commands"
	"paas/internal/deploy"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/internal/store"
)

// sources write an app's deploy branch without a push (git:sync,
// git:from-archive) under the app's push lock, the one gitreceive takes
// for a push, and land what they deploy as a push does: the release first,
// then the branch moved, the release taken back if the branch cannot move.
type sources struct {
	locks    *applock.Set
	store    *store.Store
	repos    *repos
	pipeline *deploy.Pipeline
	tmp      string // where archives are unpacked (the builds dir)
}

var _ commands.GitSources = (*sources)(nil)

// fetchTimeout bounds one git:sync fetch or archive download.
const fetchTimeout = 10 * time.Minute

// lockPush takes the app's push lock, saying so when it waits, and loads
// the app.
func (s *sources) lockPush(ctx context.Context, app string, out io.Writer) (*paas.App, func(), error) {
	unlock, err := s.locks.Lock(ctx, app, func() {
		output.Step(out, "Waiting for another push to %s to finish", app)
	})
	if err != nil {
		return nil, nil, err
	}
	a, err := s.store.App(app)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return a, unlock, nil
}

func (s *sources) Sync(ctx context.Context, app string, who paas.Identity, opts commands.SyncOptions, out io.Writer) error {
	a, unlock, err := s.lockPush(ctx, app, out)
	if err != nil {
		return err
	}
	defer unlock()
	repo := s.repos.Path(app)
	branch := a.Branch()
	old, err := gitreceive.BranchCommit(repo, branch)
	if err != nil {
		return err
	}
	where := opts.URL
	if opts.Ref != "" {
		where += "#" + opts.Ref
	}
	if old == "" {
		output.Step(out, "Cloning %s from %s", app, where)
	} else {
		output.Step(out, "Fetching remote code for %s from %s", app, where)
	}
	got, err := gitreceive.Fetch(ctx, repo, gitreceive.FetchOptions{URL: opts.URL, Ref: opts.Ref, Default: branch, Protocols: opts.Protocols, Timeout: fetchTimeout})
	if err != nil {
		return err
	}
	// A first sync of a branch makes it the deploy branch, as Dokku's
	// clone does.
	if old == "" && opts.Ref != "" && got.Branch == opts.Ref && got.Branch != branch {
		if opts.SkipDeployBranch {
			output.Detail(out, "Detected branch %s, skipping deploy-branch setting", got.Branch)
		} else if err := commands.ValidateBranch(got.Branch); err == nil {
			output.Detail(out, "Detected branch, setting deploy-branch to %s", got.Branch)
			if _, err := s.store.UpdateApp(app, func(a *paas.App) error { a.DeployBranch = got.Branch; return nil }); err != nil {
				return err
			}
			branch = got.Branch
			if old, err = gitreceive.BranchCommit(repo, branch); err != nil {
				return err
			}
		}
	}
	changed := got.Commit != old
	build := opts.Build || opts.BuildIfChanges && changed
	if !build {
		if opts.BuildIfChanges {
			output.Detail(out, "Skipping build as no changes were detected")
			return nil
		}
		if !changed {
			output.Detail(out, "%s is at %s already", branch, short(got.Commit))
			return nil
		}
		if err := gitreceive.UpdateBranch(ctx, repo, branch, got.Commit, old); err != nil {
			return err
		}
		output.Step(out, "Updated %s to %s; git:sync --build or ps:rebuild deploys it", branch, short(got.Commit))
		return nil
	}
	return s.land(ctx, app, who, repo, branch, got.Commit, old, deploy.Source{
		Reason: "git:sync", Kind: "git-sync", Metadata: opts.URL + "#" + got.Commit,
	}, out)
}

// land deploys commit of repo and then moves branch from old to it, as a
// push lands: a release whose branch cannot move is taken back.
func (s *sources) land(ctx context.Context, app string, who paas.Identity, repo, branch, commit, old string, src deploy.Source, out io.Writer) error {
	r := &gitreceive.Push{Repo: repo}
	src.Commit = commit
	src.Export = func(ctx context.Context, w io.Writer) error { return r.Archive(ctx, commit, w) }
	landing, err := s.pipeline.Push(ctx, app, who, src, out)
	if err != nil {
		return err
	}
	moved := true
	uerr := gitreceive.UpdateBranch(context.WithoutCancel(ctx), repo, branch, commit, old)
	if uerr != nil {
		moved = false
		output.Warn(out, "%v: taking the deploy of %s back", uerr, short(commit))
	}
	if err := landing.Land(context.WithoutCancel(ctx), moved, out); err != nil {
		return err
	}
	return uerr
}

func (s *sources) FromArchive(ctx context.Context, app string, who paas.Identity, opts commands.ArchiveOptions, out io.Writer) error {
	a, unlock, err := s.lockPush(ctx, app, out)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	in, source := opts.Stdin, "stdin"
	if opts.URL != "" {
		output.Step(out, "Downloading %s file from %s", opts.Type, opts.URL)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
		if err != nil {
			return err
		}
		resp, err := archiveClient(opts.Local).Do(req)
		if err != nil {
			return fmt.Errorf("download %s: %w", opts.URL, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("download %s: %s", opts.URL, resp.Status)
		}
		in, source = resp.Body, opts.URL
	} else {
		output.Step(out, "Fetching %s file from stdin", opts.Type)
	}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return err
	}
	work, err := os.MkdirTemp(s.tmp, app+"-archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	output.Step(out, "Generating build context")
	if err := deploy.UnpackArchive(in, opts.Type, work, deploy.ArchiveLimits{MaxFiles: commands.MaxArchiveFiles, MaxBytes: commands.MaxArchiveSize}); err != nil {
		return fmt.Errorf("unpack the %s archive: %w; nothing was changed", opts.Type, err)
	}
	dir, err := contentDir(work)
	if err != nil {
		return err
	}
	repo := s.repos.Path(app)
	branch := a.Branch()
	old, err := gitreceive.BranchCommit(repo, branch)
	if err != nil {
		return err
	}
	commit, changed, err := gitreceive.CommitDir(ctx, repo, dir, old, opts.Name, opts.Email, "Automated commit from git:from-archive ("+source+")")
	if err != nil {
		return fmt.Errorf("commit the archive: %w", err)
	}
	if !changed {
		output.Step(out, "No changes detected: %s is at %s already; skipping", branch, short(old))
		return nil
	}
	output.Step(out, "Committed the archive to %s as %s", branch, short(commit))
	return s.land(ctx, app, who, repo, branch, commit, old, deploy.Source{
		Reason: "git:from-archive", Kind: opts.Type, Metadata: source,
	}, out)
}

// contentDir is what of an unpacked archive becomes the app: its one
// top-level directory when it holds nothing else (as GitHub's archives
// are made), else the whole of it, as Dokku does.
func contentDir(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "", errors.New("the archive is empty; nothing was changed")
	}
	if len(entries) == 1 && entries[0].IsDir() {
		return filepath.Join(dir, entries[0].Name()), nil
	}
	return dir, nil
}

// archiveClient is the HTTP client that downloads an archive. Unless local,
// it refuses to connect to this machine's own addresses (loopback,
// unspecified, link-local), where paasd's registry and the router's
// control endpoint listen, whatever name or redirect leads there.
func archiveClient(local bool) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	if !local {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(host)
			if err != nil {
				return err
			}
			ip = ip.Unmap()
			if ip.IsLoopback() || ip.IsUnspecified() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() {
				return fmt.Errorf("%s is this machine's own address: administrators only", ip)
			}
			return nil
		}
	}
	tr := &http.Transport{DialContext: dialer.DialContext, TLSHandshakeTimeout: 30 * time.Second, ResponseHeaderTimeout: time.Minute}
	return &http.Client{Transport: tr}
}
