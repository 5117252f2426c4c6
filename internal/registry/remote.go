package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Remote prunes and deletes the repositories of a registry elsewhere (not
// the embedded one) through the distribution API: it deletes manifests by
// digest, which takes the tags pointing to them along; the registry's own
// garbage collection then removes the blobs.
type Remote struct {
	Auth      authn.Authenticator // nil: anonymous
	Transport http.RoundTripper   // nil: go-containerregistry's default (see TrustCA)
}

func (r *Remote) options(ctx context.Context) []remote.Option {
	auth := r.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// Prune deletes the manifests the tags of repository repo (host/path) point
// to, other than those of keep (digests). It returns how many it deleted.
// Untagged manifests cannot be listed through the API and stay.
func (r *Remote) Prune(ctx context.Context, repo string, keep []string) (int, error) {
	keepSet := map[string]bool{}
	for _, k := range keep {
		keepSet[k] = true
	}
	return r.deleteTagged(ctx, repo, func(digest string) bool { return !keepSet[digest] })
}

// DeleteRepository deletes every tagged manifest of repository repo.
func (r *Remote) DeleteRepository(ctx context.Context, repo string) error {
	_, err := r.deleteTagged(ctx, repo, func(string) bool { return true })
	return err
}

func (r *Remote) deleteTagged(ctx context.Context, repo string, drop func(digest string) bool) (int, error) {
	rp, err := name.NewRepository(repo)
	if err != nil {
		return 0, fmt.Errorf("repository %q: %w", repo, err)
	}
	opts := r.options(ctx)
	tags, err := remote.List(rp, opts...)
	if isStatus(err, http.StatusNotFound) {
		return 0, nil // no such repository: nothing to delete
	}
	if err != nil {
		return 0, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	seen := map[string]bool{}
	removed := 0
	for _, tag := range tags {
		desc, err := remote.Head(rp.Tag(tag), opts...)
		if isStatus(err, http.StatusNotFound) {
			continue // deleted with a manifest another tag named
		}
		if err != nil {
			return removed, fmt.Errorf("resolve %s:%s: %w", repo, tag, err)
		}
		d := desc.Digest.String()
		if seen[d] || !drop(d) {
			continue
		}
		seen[d] = true
		err = remote.Delete(rp.Digest(d), opts...)
		if err != nil && !isStatus(err, http.StatusNotFound) {
			return removed, fmt.Errorf("delete %s@%s: %w", repo, d, err)
		}
		removed++
	}
	return removed, nil
}

func isStatus(err error, code int) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == code
}
