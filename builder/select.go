package builder

import (
	"context"
	"fmt"
	"io"

	"paas/internal/output"
	"paas/internal/paas"
)

// ImageBuilder is one way of turning a build dir into an image.
type ImageBuilder interface {
	Build(ctx context.Context, in Input) (paas.Image, error)
}

var (
	_ ImageBuilder = (*Dockerfile)(nil)
	_ ImageBuilder = (*Pack)(nil)
	_ ImageBuilder = (*Select)(nil)
)

// SettingsStore gives an app's build settings, merged over the global ones.
type SettingsStore interface {
	BuildSettings(app string) (paas.BuildSettings, error)
}

// Select picks the builder of a push like Dokku does: the app's
// `builder:set APP selected` wins; otherwise a Dockerfile at the root means a
// Dockerfile build, and anything else goes to Cloud Native Buildpacks.
type Select struct {
	settings   SettingsStore
	dockerfile ImageBuilder
	pack       ImageBuilder
}

// NewSelect returns the builder the deploy pipeline uses.
func NewSelect(settings SettingsStore, dockerfile, pack ImageBuilder) *Select {
	return &Select{settings: settings, dockerfile: dockerfile, pack: pack}
}

// Choose returns the builder name for app's build dir: "dockerfile" or "pack".
func Choose(s paas.BuildSettings, dir string) (string, error) {
	switch s.Selected {
	case paas.BuilderDockerfile, paas.BuilderPack:
		return s.Selected, nil
	case "":
		if Detect(dir) {
			return paas.BuilderDockerfile, nil
		}
		return paas.BuilderPack, nil
	default:
		return "", fmt.Errorf("unknown builder %q selected: use builder:set APP selected dockerfile|pack", s.Selected)
	}
}

// Build builds in with the chosen builder.
func (s *Select) Build(ctx context.Context, in Input) (paas.Image, error) {
	set, err := s.settings.BuildSettings(in.App)
	if err != nil {
		return paas.Image{}, err
	}
	kind, err := Choose(set, in.Dir)
	if err != nil {
		return paas.Image{}, err
	}
	out := in.Out
	if out == nil {
		out = io.Discard
	}
	switch kind {
	case paas.BuilderDockerfile:
		if in.Report != nil {
			in.Report(paas.BuilderDockerfile)
		}
		if !Detect(in.Dir) {
			return paas.Image{}, fmt.Errorf("build image: no %s at the root of the app (builder:set %s selected dockerfile)", DockerfileName, in.App)
		}
		return s.dockerfile.Build(ctx, in)
	default:
		in.Builder = set.Stack
		if set.BuildEnv == "true" {
			in.Env = in.Config
			output.Step(out, "Passing %d config vars to the build (build-env)", len(in.Config))
		}
		if in.Report != nil {
			b := set.Stack
			if b == "" {
				b = "default"
			}
			in.Report(paas.BuilderPack + " " + b)
		}
		return s.pack.Build(ctx, in)
	}
}
