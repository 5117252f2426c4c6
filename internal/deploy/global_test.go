package deploy

import (
	"context"
	"io"
	"maps"
	"testing"

	"paas/internal/paas"
)

// The global config (config:set --global) reaches a release made by a
// push, an image or a config change, under the app's own vars; the app's
// Config stays its own; the deploy source is recorded once a push lands.
func TestGlobalConfigAndDeploySource(t *testing.T) {
	e := newPipelineEnv(t, &paas.App{Name: "web", Config: map[string]string{"A": "app"}})
	e.store.global = map[string]string{"A": "global", "G": "g"}
	ctx := context.Background()

	src := source()
	src.Reason, src.Kind, src.Metadata = "git:sync", "git-sync", "file:///x#"+commit
	if err := e.push(ctx, "web", alice, src, io.Discard); err != nil {
		t.Fatal(err)
	}
	rel := e.scheduler.deployed[0]
	if !maps.Equal(rel.Config, map[string]string{"A": "app"}) || !maps.Equal(rel.Global, e.store.global) {
		t.Fatalf("release config %q global %q", rel.Config, rel.Global)
	}
	if got := rel.Merged(); got["A"] != "app" || got["G"] != "g" {
		t.Fatalf("merged %q", got)
	}
	if in := e.builder.inputs[0]; in.Config["G"] != "g" || in.Config["A"] != "app" {
		t.Fatalf("the build saw config %q", in.Config)
	}
	app, _ := e.store.App("web")
	if !maps.Equal(app.Config, map[string]string{"A": "app"}) {
		t.Fatalf("the app's own config became %q", app.Config)
	}
	if app.DeploySource != "git-sync" || app.DeploySourceMetadata != "file:///x#"+commit {
		t.Fatalf("deploy source %q %q", app.DeploySource, app.DeploySourceMetadata)
	}
	if d := e.store.deployRecords("web")[0]; d.Reason != "git:sync" {
		t.Fatalf("deploy record reason %q", d.Reason)
	}

	// a config change takes the global config as it is now
	e.store.global = map[string]string{"G": "g2"}
	if err := e.p.SetConfig(ctx, "web", alice, "config:set B", true, func(cfg map[string]string) error { cfg["B"] = "b"; return nil }, io.Discard); err != nil {
		t.Fatal(err)
	}
	rel = e.scheduler.deployed[1]
	if !maps.Equal(rel.Global, map[string]string{"G": "g2"}) || rel.Config["B"] != "b" {
		t.Fatalf("config change release config %q global %q", rel.Config, rel.Global)
	}

	// a plain push records git and its commit
	if err := e.push(ctx, "web", alice, source(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if app, _ := e.store.App("web"); app.DeploySource != "git" || app.DeploySourceMetadata != commit {
		t.Fatalf("deploy source %q %q", app.DeploySource, app.DeploySourceMetadata)
	}
}
