package gitreceive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// git runs git in dir and returns its trimmed output.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=T", "GIT_AUTHOR_EMAIL=t@x", "GIT_COMMITTER_NAME=T", "GIT_COMMITTER_EMAIL=t@x")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// remoteRepo makes a repository with branches main and dev, a tag v1 on
// main's first commit and a commit on no branch; it returns its dir and
// the commits.
func remoteRepo(t *testing.T, firstBranch string) (dir string, c map[string]string) {
	t.Helper()
	dir = t.TempDir()
	gitIn(t, dir, "init", "-q", "-b", firstBranch)
	c = map[string]string{}
	commit := func(name string) {
		os.WriteFile(filepath.Join(dir, "f"), []byte(name), 0o644)
		gitIn(t, dir, "add", "f")
		gitIn(t, dir, "commit", "-q", "-m", name)
		c[name] = gitIn(t, dir, "rev-parse", "HEAD")
	}
	commit("first")
	gitIn(t, dir, "tag", "v1")
	commit("second")
	gitIn(t, dir, "checkout", "-q", "-b", "dev")
	commit("dev")
	gitIn(t, dir, "checkout", "-q", "--detach")
	commit("loose")
	gitIn(t, dir, "checkout", "-q", firstBranch)
	return dir, c
}

func TestFetch(t *testing.T) {
	src, c := remoteRepo(t, "main")
	repo := filepath.Join(t.TempDir(), "app.git")
	if err := InitRepo(repo, "main"); err != nil {
		t.Fatal(err)
	}
	url := "file://" + src
	tests := []struct {
		ref, dflt  string
		wantCommit string
		wantBranch string
		wantErr    string
	}{
		{ref: "", dflt: "main", wantCommit: c["second"], wantBranch: "main"},
		{ref: "", dflt: "prod", wantCommit: c["second"]}, // no prod: the remote's HEAD
		{ref: "dev", dflt: "main", wantCommit: c["dev"], wantBranch: "dev"},
		{ref: "v1", dflt: "main", wantCommit: c["first"]},
		{ref: c["first"], dflt: "main", wantCommit: c["first"]},
		{ref: c["second"][:10], dflt: "main", wantCommit: c["second"]},
		{ref: c["loose"], dflt: "main", wantCommit: c["loose"]}, // on no branch: fetched by hash
		{ref: "nope", dflt: "main", wantErr: `has no branch, tag or commit "nope"`},
	}
	for _, tc := range tests {
		t.Run(tc.ref+"/"+tc.dflt, func(t *testing.T) {
			got, err := Fetch(context.Background(), repo, FetchOptions{URL: url, Ref: tc.ref, Default: tc.dflt, Protocols: []string{"file"}, Timeout: time.Minute})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil || got.Commit != tc.wantCommit || got.Branch != tc.wantBranch {
				t.Fatalf("Fetch = %+v, %v; want %s on %q", got, err, tc.wantCommit, tc.wantBranch)
			}
			if refs := gitIn(t, repo, "for-each-ref"); refs != "" {
				t.Fatalf("Fetch left refs behind:\n%s", refs)
			}
		})
	}
	t.Run("a transport that is not allowed", func(t *testing.T) {
		_, err := Fetch(context.Background(), repo, FetchOptions{URL: url, Default: "main", Protocols: []string{"https"}})
		if err == nil || !strings.Contains(err.Error(), "transport 'file' not allowed") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an option as the URL is never one", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "pwned")
		_, err := Fetch(context.Background(), repo, FetchOptions{URL: "--upload-pack=touch " + marker, Default: "main", Protocols: []string{"file", "ssh"}})
		if err == nil {
			t.Fatal("fetched from an option")
		}
		if _, serr := os.Stat(marker); serr == nil {
			t.Fatal("the option ran a command")
		}
	})
}

func TestCommitDirAndUpdateBranch(t *testing.T) {
	ctx := context.Background()
	repo := filepath.Join(t.TempDir(), "app.git")
	if err := InitRepo(repo, "main"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("v1"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*.html\n"), 0o644)
	c1, changed, err := CommitDir(ctx, repo, dir, "", "Camila", "camila@example.com", "from an archive")
	if err != nil || !changed {
		t.Fatalf("first commit: %v %v", changed, err)
	}
	if files := gitIn(t, repo, "ls-tree", "--name-only", c1); files != ".gitignore\nindex.html" {
		t.Fatalf("a .gitignore left files out: %q", files)
	}
	if who := gitIn(t, repo, "log", "-1", "--format=%an <%ae> %s", c1); who != "Camila <camila@example.com> from an archive" {
		t.Fatalf("author %q", who)
	}
	if same, changed, err := CommitDir(ctx, repo, dir, c1, "x", "x@x", "again"); err != nil || changed || same != c1 {
		t.Fatalf("same tree: %s %v %v", same, changed, err)
	}
	if err := UpdateBranch(ctx, repo, "main", c1, ""); err != nil {
		t.Fatal(err)
	}
	if at, err := BranchUpdatedAt(repo, "main"); err != nil || time.Since(at) > time.Minute {
		t.Fatalf("BranchUpdatedAt = %v, %v", at, err)
	}
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("v2"), 0o644)
	c2, changed, err := CommitDir(ctx, repo, dir, c1, "x", "x@x", "v2")
	if err != nil || !changed || gitIn(t, repo, "rev-parse", c2+"^") != c1 {
		t.Fatalf("second commit: %s %v %v", c2, changed, err)
	}
	// the branch moved meanwhile: the update is refused
	if err := UpdateBranch(ctx, repo, "main", c2, c2); err == nil {
		t.Fatal("UpdateBranch from a stale old commit succeeded")
	}
	if err := UpdateBranch(ctx, repo, "main", c2, c1); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "clone.git")
	if err := InitRepo(other, "main"); err != nil {
		t.Fatal(err)
	}
	if err := CopyRefs(ctx, repo, other); err != nil {
		t.Fatal(err)
	}
	if got, _ := BranchCommit(other, "main"); got != c2 {
		t.Fatalf("copied main = %s, want %s", got, c2)
	}
	if at, err := BranchUpdatedAt(other, "nope"); err != nil || !at.IsZero() {
		t.Fatalf("BranchUpdatedAt of a missing branch = %v, %v", at, err)
	}
}
