package daemon

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"

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
}

func newBuilders(ctx context.Context, docker *client.Client, st *store.Store, dataDir string, reg paas.ImageRegistry, name string, log *slog.Logger) (*builders, error) {
	moby, err := builder.NewPackDocker(ctx)
	if err != nil {
		return nil, err
	}
	logins := builder.NewCredentials(filepath.Join(dataDir, "registry-credentials.json"))
	pack := builder.NewPack(docker, moby, logins, reg, name, log)
	return &builders{
		selector: builder.NewSelect(st, builder.NewDockerfile(docker, reg, log), pack),
		pack:     pack,
		importer: builder.NewImporter(logins, reg),
		logins:   logins,
		close:    func() { moby.Close() },
	}, nil
}

// commands returns the build commands acting on b.
func (b *builders) commands(st *store.Store, pipeline *deploy.Pipeline) []*commands.Command {
	c := &commands.Builds{
		Store: st, Pipeline: pipeline, Cache: b.pack, Logins: b.logins, Running: pipeline,
		Images: &imageDeployer{pipeline: pipeline, importer: b.importer},
	}
	return c.Commands()
}

type imageDeployer struct {
	pipeline *deploy.Pipeline
	importer deploy.ImageImporter
}

var _ commands.ImageDeployer = (*imageDeployer)(nil)

func (d *imageDeployer) DeployImage(ctx context.Context, app string, who paas.Identity, source string, out io.Writer) error {
	return d.pipeline.DeployImage(ctx, app, who, d.importer, source, out)
}
