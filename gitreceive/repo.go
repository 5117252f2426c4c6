package gitreceive

import (
	"errors"
	"fmt"
	"os"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// InitRepo creates the bare repository of an app at dir, with HEAD on branch.
// An existing repository is left as it is.
func InitRepo(dir, branch string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	tmp := dir + ".init"
	os.RemoveAll(tmp)
	repo, err := git.PlainInit(tmp, true)
	if err != nil {
		return fmt.Errorf("init repo: %w", err)
	}
	head := plumbing.NewSymbolicReference(plumbing.HEAD, plumbing.NewBranchReferenceName(branch))
	if err := repo.Storer.SetReference(head); err != nil {
		return fmt.Errorf("init repo: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("init repo: %w", err)
	}
	return nil
}

// BranchCommit returns the commit a branch of the bare repository at dir points
// to, or "" when the branch does not exist.
func BranchCommit(dir, branch string) (string, error) {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return "", fmt.Errorf("open repo: %w", err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read branch %s: %w", branch, err)
	}
	return ref.Hash().String(), nil
}
