// Command create makes a CNB builder image in the local Docker daemon from a
// builder.toml, with pack as a library and no image pull (the build and run
// images must be local). scripts/builder/build.sh runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	pubbldr "github.com/buildpacks/pack/builder"
	packclient "github.com/buildpacks/pack/pkg/client"
	"github.com/buildpacks/pack/pkg/dist"
	packimage "github.com/buildpacks/pack/pkg/image"
	"github.com/buildpacks/pack/pkg/logging"

	"paas/builder"
)

func main() {
	config := flag.String("config", "", "builder.toml")
	name := flag.String("name", "", "image name of the builder")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *config, *name); err != nil {
		fmt.Fprintf(os.Stderr, " !     create builder: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, config, name string) error {
	if config == "" || name == "" {
		return fmt.Errorf("-config and -name are required")
	}
	cfg, warnings, err := pubbldr.ReadConfig(config)
	if err != nil {
		return err
	}
	logger := logging.NewLogWithWriters(os.Stdout, os.Stderr)
	for _, w := range warnings {
		logger.Warn(w)
	}
	docker, err := builder.NewPackDocker(ctx)
	if err != nil {
		return err
	}
	defer docker.Close()
	pc, err := packclient.NewClient(packclient.WithDockerClient(docker), packclient.WithLogger(logger))
	if err != nil {
		return err
	}
	return pc.CreateBuilder(ctx, packclient.CreateBuilderOptions{
		RelativeBaseDir: filepath.Dir(config),
		BuilderName:     name,
		Config:          cfg,
		PullPolicy:      packimage.PullNever,
		Targets:         []dist.Target{{OS: "linux", Arch: "amd64"}},
		Labels:          map[string]string{"paas.builder": "air-gapped"},
	})
}
