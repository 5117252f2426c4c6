// Package builder turns an exported commit into an image in the registry.
package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"paas/internal/output"
	"paas/internal/paas"
)

// DockerAPI is the part of the Docker client the builder uses.
// *client.Client satisfies it.
type DockerAPI interface {
	ImageBuild(ctx context.Context, buildContext io.Reader, options build.ImageBuildOptions) (build.ImageBuildResponse, error)
	ImagePush(ctx context.Context, ref string, options image.PushOptions) (io.ReadCloser, error)
}

var _ DockerAPI = (*client.Client)(nil)

// Input is one build: an app's exported commit and where its output goes.
type Input struct {
	App string    // app name, already validated
	Dir string    // directory holding the exported commit (contains the Dockerfile)
	Tag string    // image tag chosen by the caller, e.g. "v3-abc1234"
	Out io.Writer // build output streams here, line by line, as it happens

	Config map[string]string // the app's config; Select hands it to the build when build-env is on
	// Set by Select for Pack:
	Builder string            // CNB builder image; "" for project.toml's or the default
	Env     map[string]string // variables the buildpacks see
	// Report, when set, is told which builder runs, as soon as it is chosen.
	Report func(builder string)
}

// DockerfileName is the file a Dockerfile build reads, at the root of Input.Dir.
const DockerfileName = "Dockerfile"

// Dockerfile builds images from an app's Dockerfile with the Docker daemon
// and pushes them to a registry.
type Dockerfile struct {
	cli    DockerAPI
	reg    paas.ImageRegistry
	log    *slog.Logger
	limits BuildLimits
}

// NewDockerfile returns a builder whose images go to reg, named
// reg.Repository(app), e.g. "127.0.0.1:5001/myinstall/hello".
func NewDockerfile(cli DockerAPI, reg paas.ImageRegistry, log *slog.Logger) *Dockerfile {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dockerfile{cli: cli, reg: reg, log: log.With("component", "builder")}
}

// Repository returns the repository an app's images are pushed to.
func (b *Dockerfile) Repository(app string) string { return b.reg.Repository(app) }

// Detect reports whether dir holds a Dockerfile build.
func Detect(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, DockerfileName))
	return err == nil && fi.Mode().IsRegular()
}

// Build builds the image of in.Dir's Dockerfile, tags it
// Repository(in.App)+":"+in.Tag, pushes it and returns it by digest. Build
// output streams to in.Out. A failing build returns an error carrying the
// daemon's message, and nothing is pushed.
func (b *Dockerfile) Build(ctx context.Context, in Input) (paas.Image, error) {
	out := in.Out
	if out == nil {
		out = io.Discard
	}
	if in.App == "" || in.Tag == "" {
		return paas.Image{}, errors.New("build image: app and tag are required")
	}
	repo := b.Repository(in.App)
	ref := repo + ":" + in.Tag
	log := b.log.With("app", in.App, "tag", in.Tag)

	output.Step(out, "Building %s from Dockerfile", in.App)
	log.Info("building image", "ref", ref)
	imageID, err := buildImage(ctx, b.cli, in.Dir, ref, map[string]string{paas.LabelApp: in.App}, b.limits, out)
	if err != nil {
		return paas.Image{}, err
	}
	log.Info("built image", "ref", ref, "id", imageID)
	output.Step(out, "Pushing image %s", ref)
	digest, err := pushImage(ctx, b.cli, ref, DockerAuth(b.reg), out)
	if err != nil {
		return paas.Image{}, err
	}
	log.Info("pushed image", "ref", ref, "digest", digest)
	return paas.Image{Repository: repo, Digest: digest, Builder: "dockerfile"}, nil
}

// buildImage builds the context in dir with the classic builder, tags the
// result ref and returns its image ID. When the builder reused a cached
// layer of an image that was deleted meanwhile (apps:destroy of an app with
// the same content), it builds once more: the layer is made again.
func buildImage(ctx context.Context, cli DockerAPI, dir, ref string, labels map[string]string, limits BuildLimits, out io.Writer) (string, error) {
	id, err := buildImageOnce(ctx, cli, dir, ref, labels, limits, out)
	if err != nil && strings.Contains(err.Error(), "unable to find image") && ctx.Err() == nil {
		output.Step(out, "A cached layer was deleted during the build; building again")
		id, err = buildImageOnce(ctx, cli, dir, ref, labels, limits, out)
	}
	return id, err
}

func buildImageOnce(ctx context.Context, cli DockerAPI, dir, ref string, labels map[string]string, limits BuildLimits, out io.Writer) (string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	if !Detect(root) {
		return "", fmt.Errorf("build image: no %s at the root of the app", DockerfileName)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, root, DockerfileName)) }()
	defer pr.Close()

	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{ref},
		Dockerfile:  DockerfileName,
		Remove:      true,
		ForceRemove: true,
		Labels:      labels,
		Version:     build.BuilderV1,
		// Each RUN step's container runs under the build limits.
		Memory:    limits.MemoryBytes,
		CPUQuota:  limits.quota(),
		CPUPeriod: limits.period(),
	})
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	defer resp.Body.Close()
	res, err := readStream(resp.Body, out, false)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	if res.imageID == "" {
		return "", errors.New("build image: the daemon reported no image ID")
	}
	return res.imageID, nil
}

// imagePusher pushes a local image to its registry.
type imagePusher interface {
	ImagePush(ctx context.Context, ref string, options image.PushOptions) (io.ReadCloser, error)
}

// pushImage pushes ref with the login auth (DockerAuth) and returns the
// digest of the manifest the registry stored.
func pushImage(ctx context.Context, cli imagePusher, ref, auth string, out io.Writer) (string, error) {
	rc, err := cli.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return "", fmt.Errorf("push image: %w", err)
	}
	defer rc.Close()
	res, err := readStream(rc, out, true)
	if err != nil {
		return "", fmt.Errorf("push image: %w", err)
	}
	if res.digest == "" {
		return "", fmt.Errorf("push image %s: the registry reported no digest", ref)
	}
	return res.digest, nil
}
