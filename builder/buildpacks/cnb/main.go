// Command cnb is bin/detect and bin/build of every paas buildpack (see package
// paas/builder/buildpacks): it reads which buildpack it serves from
// $CNB_BUILDPACK_DIR/buildpack.toml and what to do from its own name.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"

	"paas/builder/buildpacks"
)

// Detect exit codes of the buildpack API.
const (
	detectPass = 0
	detectFail = 100
)

func main() {
	os.Exit(run())
}

func run() int {
	bpDir := os.Getenv("CNB_BUILDPACK_DIR")
	id, err := buildpacks.BuildpackID(bpDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	appDir, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch phase := filepath.Base(os.Args[0]); phase {
	case "detect":
		if detect(id, appDir) {
			return detectPass
		}
		return detectFail
	case "build":
		layers := os.Getenv("CNB_LAYERS_DIR")
		if layers == "" && len(os.Args) > 1 {
			layers = os.Args[1]
		}
		if err := build(id, appDir, bpDir, layers); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", id, err)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(os.Stderr, "cnb: run as bin/detect or bin/build, not %q\n", phase)
		return 1
	}
}

func exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// staticRoot is the directory a static site is served from, "" when appDir
// holds no static site.
func staticRoot(appDir string) string {
	for _, dir := range []string{"public", "."} {
		if exists(filepath.Join(appDir, dir, "index.html")) {
			return filepath.Join(appDir, dir)
		}
	}
	return ""
}

func detect(id, appDir string) bool {
	switch id {
	case buildpacks.GoID:
		return exists(filepath.Join(appDir, "go.mod"))
	case buildpacks.StaticID:
		return staticRoot(appDir) != ""
	case buildpacks.ProcfileID:
		return exists(filepath.Join(appDir, "Procfile"))
	}
	return false
}

func build(id, appDir, bpDir, layers string) error {
	switch id {
	case buildpacks.GoID:
		return buildGo(appDir, layers)
	case buildpacks.StaticID:
		return buildStatic(appDir, bpDir, layers)
	case buildpacks.ProcfileID:
		return buildProcfile(appDir, layers)
	}
	return fmt.Errorf("unknown buildpack %q", id)
}

func step(format string, args ...any) { fmt.Printf("-----> "+format+"\n", args...) }

// goTool is the build image's Go toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func buildGo(appDir, layers string) error {
	data, err := os.ReadFile(filepath.Join(appDir, "go.mod"))
	if err != nil {
		return err
	}
	mod, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil || mod.Module == nil {
		return fmt.Errorf("go.mod: no module line (%v)", err)
	}
	// The module and build caches are a cache layer: restored before the
	// build, saved after it, never part of the image.
	cache, err := buildpacks.WriteLayer(layers, "go-cache", buildpacks.LayerTypes{Cache: true}, nil)
	if err != nil {
		return err
	}
	app, err := buildpacks.WriteLayer(layers, "app", buildpacks.LayerTypes{Launch: true}, map[string]string{"module": mod.Module.Mod.Path})
	if err != nil {
		return err
	}
	bin := filepath.Join(app, "bin")
	if err := os.RemoveAll(bin); err != nil {
		return err
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	if err := seedBuildCache(filepath.Join(cache, "build")); err != nil {
		return err
	}
	gobin := goTool()
	version, _ := exec.Command(gobin, "env", "GOVERSION").Output()
	step("Building Go module %s with %s", mod.Module.Mod.Path, strings.TrimSpace(string(version)))
	cmd := exec.Command(gobin, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin+"/", "./...")
	cmd.Dir = appDir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOENV=off",
		"GOPATH="+filepath.Join(cache, "gopath"),
		"GOMODCACHE="+filepath.Join(cache, "mod"),
		"GOCACHE="+filepath.Join(cache, "build"),
		"HOME="+cache,
	)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	entries, err := os.ReadDir(bin)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return errors.New("go build made no command: the module needs a main package")
	}
	web := names[0]
	if base := filepath.Base(mod.Module.Mod.Path); slices.Contains(names, base) {
		web = base
	}
	step("Built %s; process web runs %s", strings.Join(names, ", "), web)
	return buildpacks.WriteLaunch(layers, buildpacks.Launch{Processes: []buildpacks.Process{
		{Type: "web", Command: []string{filepath.Join(bin, web)}, Default: true},
	}})
}

// seedCache is the build cache of the standard library the build image ships.
const seedCache = "/usr/local/go-cache"

// seedBuildCache starts an empty build cache from the build image's seed, so
// that a first build compiles the app, not the standard library.
func seedBuildCache(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if _, err := os.Stat(seedCache); err != nil {
		return nil
	}
	step("Starting the build cache from the toolchain's compiled standard library")
	return os.CopyFS(dir, os.DirFS(seedCache))
}

func buildStatic(appDir, bpDir, layers string) error {
	root := staticRoot(appDir)
	if root == "" {
		return errors.New("no index.html at the root or in public/")
	}
	layer, err := buildpacks.WriteLayer(layers, "server", buildpacks.LayerTypes{Launch: true}, nil)
	if err != nil {
		return err
	}
	server := filepath.Join(layer, "bin", "paas-static")
	if err := copyFile(filepath.Join(bpDir, "bin", "paas-static"), server); err != nil {
		return err
	}
	step("Serving %s with paas-static", root)
	return buildpacks.WriteLaunch(layers, buildpacks.Launch{Processes: []buildpacks.Process{
		{Type: "web", Command: []string{server, "-root", root}, Default: true},
	}})
}

func buildProcfile(appDir, layers string) error {
	data, err := os.ReadFile(filepath.Join(appDir, "Procfile"))
	if err != nil {
		return err
	}
	procs, err := buildpacks.ParseProcfile(data)
	if err != nil {
		return err
	}
	var l buildpacks.Launch
	for _, p := range procs {
		step("Process %s: %s", p.Name, p.Command)
		l.Processes = append(l.Processes, buildpacks.ShellProcess(p.Name, p.Command))
	}
	return buildpacks.WriteLaunch(layers, l)
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
