package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/buildpacks/pack/pkg/cache"
	packclient "github.com/buildpacks/pack/pkg/client"
	packimage "github.com/buildpacks/pack/pkg/image"
	"github.com/buildpacks/pack/pkg/logging"
	"github.com/buildpacks/pack/pkg/project"
	projecttypes "github.com/buildpacks/pack/pkg/project/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/heroku/color"
	mobyclient "github.com/moby/moby/client"

	"paas/internal/output"
	"paas/internal/paas"
)

// DefaultCNBBuilder is the air-gapped builder scripts/builder/build.sh makes.
const DefaultCNBBuilder = "paas/cnb-builder:latest"

// Labels a CNB builder and its images carry.
const (
	labelBuilderMetadata = "io.buildpacks.builder.metadata"
	labelBuildMetadata   = "io.buildpacks.build.metadata"
)

// NewPackDocker returns the Docker client pack needs, pinned to the API
// version the daemon speaks: pack's client refuses older daemons otherwise.
func NewPackDocker(ctx context.Context) (*mobyclient.Client, error) {
	probe, err := mobyclient.New(mobyclient.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	ping, err := probe.Ping(ctx, mobyclient.PingOptions{})
	probe.Close()
	if err != nil {
		return nil, fmt.Errorf("reach the Docker daemon: %w", err)
	}
	if ping.APIVersion == "" {
		return nil, errors.New("reach the Docker daemon: it did not tell its API version")
	}
	cli, err := mobyclient.New(mobyclient.FromEnv, mobyclient.WithAPIVersion(ping.APIVersion))
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return cli, nil
}

// PackDockerAPI is the part of the Docker client the pack builder uses
// besides pack itself. *client.Client satisfies it.
type PackDockerAPI interface {
	DockerAPI
	ImageInspect(ctx context.Context, imageID string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	VolumeRemove(ctx context.Context, volumeID string, force bool) error
	VolumeList(ctx context.Context, options volume.ListOptions) (volume.ListResponse, error)
}

var _ PackDockerAPI = (*client.Client)(nil)

// Pack builds images with Cloud Native Buildpacks through pack as a library,
// publishing them straight to the installation's registry.
type Pack struct {
	docker     PackDockerAPI
	mobyDocker packclient.DockerClient
	keychain   authn.Keychain
	reg        paas.ImageRegistry
	name       string // installation name: prefixes cache volumes
	log        *slog.Logger

	mu        sync.Mutex
	runImages map[string]string // local run image ID -> ref in the registry
}

// NewPack returns a CNB builder publishing to reg with its login.
// mobyDocker is pack's client (NewPackDocker); keychain holds the
// credentials of other registries, for builders pulled from them (nil:
// anonymous).
func NewPack(docker PackDockerAPI, mobyDocker packclient.DockerClient, keychain authn.Keychain, reg paas.ImageRegistry, name string, log *slog.Logger) *Pack {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Build output goes to a git client's remote: lines, not a terminal.
	color.Disable(true)
	return &Pack{
		docker: docker, mobyDocker: buildDocker{DockerClient: mobyDocker, installation: name}, keychain: withRegistry(reg, keychain),
		reg: reg, name: name,
		log: log.With("component", "builder"), runImages: map[string]string{},
	}
}

// Repository returns the repository an app's images are pushed to.
func (p *Pack) Repository(app string) string { return p.reg.Repository(app) }

// CacheVolumes returns the names of the Docker volumes holding app's build
// and launch caches.
func (p *Pack) CacheVolumes(app string) []string {
	return []string{p.name + "-cache-" + app + "-build", p.name + "-cache-" + app + "-launch"}
}

// PurgeCache removes the app's build cache; the next build starts cold.
func (p *Pack) PurgeCache(ctx context.Context, app string) error {
	for _, v := range p.CacheVolumes(app) {
		if err := p.docker.VolumeRemove(ctx, v, true); err != nil && !isNotFound(err) {
			return fmt.Errorf("remove cache volume %s: %w", v, err)
		}
	}
	return nil
}

func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// readProject reads dir/project.toml, when there is one.
func readProject(dir string, logger logging.Logger) (projecttypes.Descriptor, bool, error) {
	path := filepath.Join(dir, "project.toml")
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return projecttypes.Descriptor{}, false, nil
	}
	if err != nil {
		return projecttypes.Descriptor{}, false, fmt.Errorf("read project.toml: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return projecttypes.Descriptor{}, false, errors.New("read project.toml: not a regular file")
	}
	d, err := project.ReadProjectDescriptor(path, logger)
	if err != nil {
		return projecttypes.Descriptor{}, false, fmt.Errorf("read project.toml: %w", err)
	}
	return d, true, nil
}

// Build runs the CNB lifecycle of in.Builder (DefaultCNBBuilder when empty,
// or project.toml's builder) on in.Dir, publishes Repository(in.App):in.Tag
// and returns it by digest. The app's build cache lives in two Docker volumes
// kept between builds.
func (p *Pack) Build(ctx context.Context, in Input) (paas.Image, error) {
	out := in.Out
	if out == nil {
		out = io.Discard
	}
	if in.App == "" || in.Tag == "" {
		return paas.Image{}, errors.New("build image: app and tag are required")
	}
	lw := &lineWriter{out: &packNoise{w: out}}
	defer lw.Close()
	logger := logging.NewLogWithWriters(lw, lw)

	desc, hasProject, err := readProject(in.Dir, logger)
	if err != nil {
		return paas.Image{}, err
	}
	builderImage := in.Builder
	if builderImage == "" && hasProject && desc.Build.Builder != "" {
		builderImage = desc.Build.Builder
	}
	if builderImage == "" {
		builderImage = DefaultCNBBuilder
	}
	repo := p.Repository(in.App)
	ref := repo + ":" + in.Tag
	log := p.log.With("app", in.App, "tag", in.Tag, "builder", builderImage)
	output.Step(out, "Building %s with Cloud Native Buildpacks (builder %s)", in.App, builderImage)

	runImage, err := p.mirrorRunImage(ctx, builderImage, out)
	if err != nil {
		return paas.Image{}, err
	}
	pc, err := packclient.NewClient(
		packclient.WithDockerClient(p.mobyDocker),
		packclient.WithLogger(logger),
		packclient.WithKeychain(p.keychain),
	)
	if err != nil {
		return paas.Image{}, fmt.Errorf("build image: %w", err)
	}
	vols := p.CacheVolumes(in.App)
	opts := packclient.BuildOptions{
		Image:        ref,
		Builder:      builderImage,
		AppPath:      in.Dir,
		RunImage:     runImage,
		Env:          in.Env,
		Publish:      true,
		PullPolicy:   packimage.PullIfNotPresent,
		TrustBuilder: func(string) bool { return true },
		// The build container reaches the registry at the address the
		// nodes use, on the host, and trusts its CA.
		ContainerConfig: packclient.ContainerConfig{Network: "host", Volumes: p.caVolumes()},
		Cache: cache.CacheOpts{
			Build:  cache.CacheInfo{Format: cache.CacheVolume, Source: vols[0]},
			Launch: cache.CacheInfo{Format: cache.CacheVolume, Source: vols[1]},
		},
		// Layers of the previous image are reused, not rebuilt nor uploaded.
		PreviousImage:  repo + ":latest",
		AdditionalTags: []string{repo + ":latest"},
	}
	if hasProject {
		opts.ProjectDescriptor, opts.ProjectDescriptorBaseDir = desc, in.Dir
	}
	log.Info("building image", "ref", ref)
	if err := pc.Build(ctx, opts); err != nil {
		lw.Close()
		return paas.Image{}, fmt.Errorf("buildpacks: %w", err)
	}
	digest, err := p.remoteDigest(ctx, ref)
	if err != nil {
		return paas.Image{}, err
	}
	log.Info("published image", "ref", ref, "digest", digest)
	return paas.Image{Repository: repo, Digest: digest, CNB: true, Builder: "pack " + builderImage}, nil
}

// BuildCAFile is where a build container finds the registry's CA: the Go
// programs of the CNB lifecycle read every file of /etc/ssl/certs besides
// the image's own bundle.
const BuildCAFile = "/etc/ssl/certs/paas-registry-ca.pem"

// caVolumes mounts the registry's CA, when it has one of its own, into the
// build containers, read-only.
func (p *Pack) caVolumes() []string {
	if p.reg.CAFile == "" {
		return nil
	}
	return []string{p.reg.CAFile + ":" + BuildCAFile + ":ro"}
}

// remoteDigest asks the registry for the digest of ref's manifest.
func (p *Pack) remoteDigest(ctx context.Context, ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %s: %w", ref, err)
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(p.keychain))
	if err != nil {
		return "", fmt.Errorf("read digest of %s: %w", ref, err)
	}
	return desc.Digest.String(), nil
}

// RunImage returns the run image a CNB builder names in its metadata label
// (labels are the builder image's), "" when it names none.
func RunImage(labels map[string]string) (string, error) {
	var meta struct {
		Stack struct {
			RunImage struct {
				Image string `json:"image"`
			} `json:"runImage"`
		} `json:"stack"`
		Images []struct {
			Image string `json:"image"`
		} `json:"images"`
	}
	if json.Unmarshal([]byte(labels[labelBuilderMetadata]), &meta) != nil {
		return "", fmt.Errorf("not a CNB builder: it has no %s label", labelBuilderMetadata)
	}
	if len(meta.Images) > 0 && meta.Images[0].Image != "" {
		return meta.Images[0].Image, nil
	}
	return meta.Stack.RunImage.Image, nil
}

// mirrorRunImage pushes the builder's run image to the installation's
// registry when the run image is on this daemon (the air-gapped builder's
// always is) and returns its reference there; "" leaves pack to find it.
func (p *Pack) mirrorRunImage(ctx context.Context, builderImage string, out io.Writer) (string, error) {
	bi, err := p.docker.ImageInspect(ctx, builderImage)
	if err != nil {
		if isNotFound(err) {
			return "", nil // pack pulls it, or says why it cannot
		}
		return "", fmt.Errorf("inspect builder %s: %w", builderImage, err)
	}
	var labels map[string]string
	if bi.Config != nil {
		labels = bi.Config.Labels
	}
	run, err := RunImage(labels)
	if err != nil {
		return "", fmt.Errorf("%s: %w", builderImage, err)
	}
	if run == "" {
		return "", nil
	}
	ri, err := p.docker.ImageInspect(ctx, run)
	if err != nil {
		if isNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("inspect run image %s: %w", run, err)
	}
	id := strings.TrimPrefix(ri.ID, "sha256:")
	p.mu.Lock()
	mirrored, ok := p.runImages[id]
	p.mu.Unlock()
	if ok {
		return mirrored, nil
	}
	target := p.reg.Repository("cnb-run") + ":" + id[:min(16, len(id))]
	if err := p.docker.ImageTag(ctx, run, target); err != nil {
		return "", fmt.Errorf("tag run image: %w", err)
	}
	output.Step(out, "Pushing run image %s to the registry", run)
	if _, err := pushImage(ctx, p.docker, target, DockerAuth(p.reg), io.Discard); err != nil {
		return "", fmt.Errorf("push run image %s: %w", run, err)
	}
	p.mu.Lock()
	p.runImages[id] = target
	p.mu.Unlock()
	return target, nil
}

// packNoise drops the lines of pack's output that speak to a pack CLI user,
// not to someone pushing an app.
type packNoise struct{ w io.Writer }

func (n *packNoise) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Detected pack is running in a container")) {
		return len(p), nil
	}
	return n.w.Write(p)
}

// Flush passes flushes on, so lines still reach the pusher as they come.
func (n *packNoise) Flush() error {
	output.Flush(n.w)
	return nil
}
