package deploy

import (
	"context"
	"fmt"
	"io"
	"time"

	"paas/internal/cron"
	"paas/internal/output"
	"paas/internal/paas"
	"paas/plugins"
)

// ImageImporter brings a prebuilt image into the installation's registry.
type ImageImporter interface {
	Import(ctx context.Context, app, source, tag string, out io.Writer) (paas.Image, []paas.ProcessType, error)
}

// ImageAppJSON reads the app.json an image carries in its working
// directory (nil when it has none).
type ImageAppJSON interface {
	AppJSON(ctx context.Context, img paas.Image) ([]byte, error)
}

// DeployImage releases a prebuilt image (`git:from-image APP IMAGE`) like a
// push: recorded as a build, rolled out, the previous release serving until
// the new one runs. Any error changes nothing that serves.
func (p *Pipeline) DeployImage(ctx context.Context, appName string, who paas.Identity, imp ImageImporter, source string, out io.Writer) error {
	unlock, err := p.lockUnlocked(ctx, appName, out)
	if err != nil {
		return err
	}
	defer unlock()
	rec := &paas.Deploy{App: appName, Reason: "git:from-image", Author: who.Name, Builder: "image " + source, StartedAt: time.Now().UTC()}
	out, finish, err := p.record(rec, out)
	if err != nil {
		return err
	}
	err = p.deployImage(ctx, appName, who, imp, source, rec, out)
	finish(err)
	return err
}

func (p *Pipeline) deployImage(ctx context.Context, appName string, who paas.Identity, imp ImageImporter, source string, rec *paas.Deploy, out io.Writer) error {
	ctx = plugins.WithUser(ctx, who)
	app, err := p.store.App(appName)
	if err != nil {
		return err
	}
	output.Step(out, "Deploying %s from image %s", appName, source)
	version, err := p.store.LatestVersion(appName)
	if err != nil {
		return err
	}
	version++
	global, err := p.store.GlobalConfig()
	if err != nil {
		return err
	}
	img, procs, err := imp.Import(ctx, appName, source, fmt.Sprintf("v%d-image", version), out)
	if err != nil {
		return fmt.Errorf("deploy image failed: %w", err)
	}
	rec.Builder = img.Builder
	var tasks []paas.CronTask
	if aj, ok := imp.(ImageAppJSON); ok {
		data, err := aj.AppJSON(ctx, img)
		if err != nil {
			return fmt.Errorf("deploy image failed: %w", err)
		}
		if data != nil {
			if tasks, err = cron.ParseAppJSON(data, p.cronSeconds); err != nil {
				return fmt.Errorf("deploy image failed: app.json in the image: %w", err)
			}
		}
	}
	rel := &paas.Release{
		App: appName, Version: version, Image: img,
		Config: app.Config, Global: global, ConfigVersion: app.ConfigVersion,
		Processes: procs, Cron: tasks,
		Author: who.Name, Reason: "git:from-image " + source, Deploy: rec.ID,
	}
	if err := p.rollOut(ctx, app, rel, out); err != nil {
		return err
	}
	rec.Release = rel.Version
	p.setDeploySource(appName, "docker-image", source)
	output.Header(out, "Application deployed:")
	output.Detail(out, "%s", p.appURL(appName))
	return nil
}
