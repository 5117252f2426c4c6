package builder

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"paas/internal/output"
	"paas/internal/paas"
)

// Importer copies a prebuilt image into the installation's registry
// (`git:from-image`), so the swarm only ever pulls from there: from the
// local Docker daemon when it has the image (built or `docker load`ed
// there), as Dokku uses a local image first, else from its registry.
type Importer struct {
	keychain authn.Keychain
	reg      paas.ImageRegistry
	local    LocalImages
}

// LocalImages is the part of the Docker client that finds a local image
// and pushes it. *client.Client satisfies it.
type LocalImages interface {
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImagePush(ctx context.Context, ref string, options image.PushOptions) (io.ReadCloser, error)
}

var _ LocalImages = (*client.Client)(nil)

// WithLocal makes Import look for the image in the local Docker daemon
// first.
func (i *Importer) WithLocal(cli LocalImages) *Importer {
	i.local = cli
	return i
}

// LocalTags returns the names the local Docker daemon knows source by
// (tags and digests), and whether it has it at all.
func (i *Importer) LocalTags(ctx context.Context, source string) ([]string, bool, error) {
	if i.local == nil {
		return nil, false, nil
	}
	inspect, err := i.local.ImageInspect(ctx, source)
	if cerrdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("look for a local image %s: %w", source, err)
	}
	return append(slices.Clone(inspect.RepoTags), inspect.RepoDigests...), true, nil
}

// importLocal tags a local image as the app's repo:tag and pushes it;
// ok is false when the daemon does not have source.
func (i *Importer) importLocal(ctx context.Context, app, source, tag string, out io.Writer) (paas.Image, []paas.ProcessType, bool, error) {
	inspect, err := i.local.ImageInspect(ctx, source)
	if cerrdefs.IsNotFound(err) {
		return paas.Image{}, nil, false, nil
	}
	if err != nil {
		return paas.Image{}, nil, false, fmt.Errorf("look for a local image %s: %w", source, err)
	}
	repo := i.reg.Repository(app)
	ref := repo + ":" + tag
	output.Step(out, "Using the local image %s (%s)", source, shortID(inspect.ID))
	if err := i.local.ImageTag(ctx, inspect.ID, ref); err != nil {
		return paas.Image{}, nil, true, fmt.Errorf("tag %s as %s: %w", source, ref, err)
	}
	output.Step(out, "Pushing image %s", ref)
	digest, err := pushImage(ctx, i.local, ref, DockerAuth(i.reg), out)
	if err != nil {
		return paas.Image{}, nil, true, err
	}
	var labels map[string]string
	if inspect.Config != nil {
		labels = inspect.Config.Labels
	}
	cnb, procs := imageProcessTypes(labels)
	return paas.Image{Repository: repo, Digest: digest, CNB: cnb, Builder: "image " + source + " (local)"}, procs, true, nil
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	return id[:min(12, len(id))]
}

// NewImporter returns an Importer copying to reg, with reg's login there and
// keychain's (the registry:login credentials; nil for none) elsewhere.
func NewImporter(keychain authn.Keychain, reg paas.ImageRegistry) *Importer {
	return &Importer{keychain: withRegistry(reg, keychain), reg: reg}
}

// Import copies source (linux/amd64 when it is an index) to the app's
// repository as tag and returns it with its process types: a buildpacks
// image's own, otherwise one web process running the image's command.
func (i *Importer) Import(ctx context.Context, app, source, tag string, out io.Writer) (paas.Image, []paas.ProcessType, error) {
	if out == nil {
		out = io.Discard
	}
	if i.local != nil {
		img, procs, ok, err := i.importLocal(ctx, app, source, tag, out)
		if ok || err != nil {
			return img, procs, err
		}
	}
	src, err := name.ParseReference(source)
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("image reference %q: %w", source, err)
	}
	output.Step(out, "Fetching %s", src.Name())
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(i.keychain), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})}
	img, err := remote.Image(src, opts...)
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("fetch image %s: %w", src.Name(), err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("read image config of %s: %w", src.Name(), err)
	}
	digest, err := img.Digest()
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("digest of %s: %w", src.Name(), err)
	}
	repo := i.reg.Repository(app)
	dst, err := name.ParseReference(repo + ":" + tag)
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("image reference %s: %w", repo, err)
	}
	output.Step(out, "Copying %s to %s", digest, dst.Name())
	if err := remote.Write(dst, img, opts...); err != nil {
		return paas.Image{}, nil, fmt.Errorf("push image %s: %w", dst.Name(), err)
	}
	cnb, procs := imageProcessTypes(cfg.Config.Labels)
	return paas.Image{Repository: repo, Digest: digest.String(), CNB: cnb, Builder: "image " + src.Name()}, procs, nil
}

// Copy copies img, an image of the installation's registry, into app's
// repository as tag; the manifest is the same, so is the digest (apps:clone,
// apps:rename).
func (i *Importer) Copy(ctx context.Context, img paas.Image, app, tag string) (paas.Image, error) {
	src, err := name.NewDigest(img.Ref())
	if err != nil {
		return paas.Image{}, fmt.Errorf("image reference %s: %w", img.Ref(), err)
	}
	repo := i.reg.Repository(app)
	dst, err := name.ParseReference(repo + ":" + tag)
	if err != nil {
		return paas.Image{}, fmt.Errorf("image reference %s: %w", repo, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(i.keychain)}
	desc, err := remote.Get(src, opts...)
	if err != nil {
		return paas.Image{}, fmt.Errorf("fetch image %s: %w", src, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = remote.WriteIndex(dst, idx, opts...)
		}
		if err != nil {
			return paas.Image{}, fmt.Errorf("copy image %s to %s: %w", src, dst, err)
		}
	} else {
		im, err := desc.Image()
		if err == nil {
			err = remote.Write(dst, im, opts...)
		}
		if err != nil {
			return paas.Image{}, fmt.Errorf("copy image %s to %s: %w", src, dst, err)
		}
	}
	out := img
	out.Repository = repo
	return out, nil
}

// imageProcessTypes are an image's process types: a buildpacks image's own (its
// build metadata label), otherwise one web process running its command.
func imageProcessTypes(labels map[string]string) (cnb bool, procs []paas.ProcessType) {
	procs = []paas.ProcessType{{Name: paas.WebProcess}}
	if raw := labels[labelBuildMetadata]; raw != "" {
		var meta struct {
			Processes []struct {
				Type string `json:"type"`
			} `json:"processes"`
		}
		if json.Unmarshal([]byte(raw), &meta) == nil && len(meta.Processes) > 0 {
			cnb, procs = true, nil
			for _, p := range meta.Processes {
				if paas.ValidateAppName(p.Type) == nil {
					procs = append(procs, paas.ProcessType{Name: p.Type})
				}
			}
		}
	}
	return cnb, procs
}

// maxImageFile is the largest file ReadFile reads out of an image.
const maxImageFile = 1 << 20

// AppJSON returns the app.json of img, an image of the installation's
// registry: the file in the image's working directory (its root when the
// image sets none), as Dokku reads it for an image deploy; nil when the
// image has none.
func (i *Importer) AppJSON(ctx context.Context, img paas.Image) ([]byte, error) {
	ref, err := name.NewDigest(img.Ref())
	if err != nil {
		return nil, fmt.Errorf("image reference %s: %w", img.Ref(), err)
	}
	im, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuthFromKeychain(i.keychain))
	if err != nil {
		return nil, fmt.Errorf("fetch image %s: %w", ref, err)
	}
	cfg, err := im.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read image config of %s: %w", ref, err)
	}
	want := path.Join(strings.TrimPrefix(path.Clean("/"+cfg.Config.WorkingDir), "/"), "app.json")
	rc := mutate.Extract(im)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the files of %s: %w", ref, err)
		}
		if h.Typeflag != tar.TypeReg || strings.TrimPrefix(path.Clean("/"+h.Name), "/") != want {
			continue
		}
		if h.Size > maxImageFile {
			return nil, fmt.Errorf("/%s in %s: larger than %d bytes", want, ref, maxImageFile)
		}
		return io.ReadAll(io.LimitReader(tr, maxImageFile))
	}
}
