package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/docker/docker/client"

	"paas/builder"
	"paas/internal/commands"
	"paas/internal/deploy"
	"paas/internal/paas"
	"paas/internal/store"
)

// builders are the ways an app becomes an image: Dockerfile or Cloud Native
// Buildpacks for a push (Select), a copy for git:from-image.
type builders struct {
	selector *builder.Select
	pack     *builder.Pack
	importer *builder.Importer
	logins   *builder.Credentials
	close    func()
	// reg is the installation's registry, where the apps' images live.
	reg paas.ImageRegistry
}

func newBuilders(ctx context.Context, docker *client.Client, st *store.Store, dataDir string, reg paas.ImageRegistry, name string, limits builder.BuildLimits, log *slog.Logger) (*builders, error) {
	moby, err := builder.NewPackDocker(ctx)
	if err != nil {
		return nil, err
	}
	logins := builder.NewCredentials(filepath.Join(dataDir, "registry-credentials.json"))
	pack := builder.NewPack(docker, moby, logins, reg, name, log).WithLimits(limits)
	return &builders{
		selector: builder.NewSelect(st, builder.NewDockerfile(docker, reg, log).WithLimits(limits), pack),
		pack:     pack,
		importer: builder.NewImporter(logins, reg).WithLocal(docker),
		logins:   logins,
		close:    func() { moby.Close() },
		reg:      reg,
	}, nil
}

// commands returns the build commands acting on b.
func (b *builders) commands(st *store.Store, pipeline *deploy.Pipeline) []*commands.Command {
	c := &commands.Builds{
		Store: st, Pipeline: pipeline, Cache: b.pack, Logins: b.logins, Running: pipeline,
		Images: &imageDeployer{pipeline: pipeline, importer: b.importer, reg: b.reg},
	}
	return c.Commands()
}

type imageDeployer struct {
	pipeline *deploy.Pipeline
	importer *builder.Importer
	reg      paas.ImageRegistry
}

var _ commands.ImageDeployer = (*imageDeployer)(nil)

func (d *imageDeployer) DeployImage(ctx context.Context, app string, who paas.Identity, source string, out io.Writer) error {
	if !who.Admin {
		if err := d.checkSource(ctx, app, source); err != nil {
			return err
		}
	}
	return d.pipeline.DeployImage(ctx, app, who, d.importer, source, out)
}

// checkSource refuses a non-administrator an image that lives on this
// machine's own registries or in the installation's (which holds every
// app's images, wherever it is) other than the app's own repository, whether named directly or through a
// local image tagged there.
func (d *imageDeployer) checkSource(ctx context.Context, app, source string) error {
	names := []string{source}
	tags, _, err := d.importer.LocalTags(ctx, source)
	if err != nil {
		return err
	}
	names = append(names, tags...)
	own := d.reg.Repository(app)
	for _, n := range names {
		ref, err := name.ParseReference(n)
		if err != nil {
			continue // not a registry name (an image ID): its tags are checked
		}
		repo := ref.Context().Name()
		installation := strings.HasPrefix(repo, strings.TrimSuffix(d.reg.Prefix, "/")+"/")
		if repo == own || (!installation && !onThisMachine(ref.Context().RegistryStr())) {
			continue
		}
		return fmt.Errorf("image %s is in a registry of this machine (another app's, or the installation's own): administrators only", n)
	}
	return nil
}

// onThisMachine reports whether a registry host[:port] names a loopback
// address.
func onThisMachine(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && (ip.Unmap().IsLoopback() || ip.IsUnspecified())
}
