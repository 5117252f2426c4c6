package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"paas/internal/paas"
)

// Importer copies a prebuilt image from any registry into the installation's
// registry (`git:from-image`), so the swarm only ever pulls from there.
type Importer struct {
	keychain authn.Keychain
	reg      paas.ImageRegistry
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
	src, err := name.ParseReference(source)
	if err != nil {
		return paas.Image{}, nil, fmt.Errorf("image reference %q: %w", source, err)
	}
	step(out, "Fetching %s", src.Name())
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
	step(out, "Copying %s to %s", digest, dst.Name())
	if err := remote.Write(dst, img, opts...); err != nil {
		return paas.Image{}, nil, fmt.Errorf("push image %s: %w", dst.Name(), err)
	}
	procs := []paas.ProcessType{{Name: paas.WebProcess}}
	cnb := false
	if raw := cfg.Config.Labels[labelBuildMetadata]; raw != "" {
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
	return paas.Image{Repository: repo, Digest: digest.String(), CNB: cnb, Builder: "image " + src.Name()}, procs, nil
}
