// Package buildpacks holds the buildpacks of paas's air-gapped builder
// (buildpack API 0.10, linux/amd64), written in Go and built static so they run
// on the builder's busybox build image:
//
//   - paas/go: Go modules, built with the toolchain of the build image; the
//     module and build caches are a cache layer kept between builds.
//   - paas/static: a static site (index.html at the root or in public/),
//     served by paas-static, a tiny file server the buildpack ships.
//   - paas/procfile: the Procfile's process types become the image's processes.
//
// One binary (cnb) is every buildpack's bin/detect and bin/build; it reads the
// buildpack's id from buildpack.toml. scripts/builder/build.sh packs them into
// the builder image.
package buildpacks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// IDs of the buildpacks.
const (
	GoID       = "paas/go"
	StaticID   = "paas/static"
	ProcfileID = "paas/procfile"
)

// Process is one entry of launch.toml.
type Process struct {
	Type    string   `toml:"type"`
	Command []string `toml:"command"`
	Args    []string `toml:"args,omitempty"`
	Default bool     `toml:"default,omitempty"`
}

// Launch is launch.toml.
type Launch struct {
	Processes []Process `toml:"processes"`
}

// LayerTypes is the [types] table of a layer's toml.
type LayerTypes struct {
	Build  bool `toml:"build"`
	Launch bool `toml:"launch"`
	Cache  bool `toml:"cache"`
}

// WriteLayer creates (or keeps) layersDir/name and writes its toml with types
// and metadata; it returns the layer's directory.
func WriteLayer(layersDir, name string, types LayerTypes, metadata map[string]string) (string, error) {
	dir := filepath.Join(layersDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create layer %s: %w", name, err)
	}
	f, err := os.Create(dir + ".toml")
	if err != nil {
		return "", fmt.Errorf("write layer %s: %w", name, err)
	}
	defer f.Close()
	doc := map[string]any{"types": types}
	if len(metadata) > 0 {
		doc["metadata"] = metadata
	}
	if err := toml.NewEncoder(f).Encode(doc); err != nil {
		return "", fmt.Errorf("write layer %s: %w", name, err)
	}
	return dir, nil
}

// ReadLayerMetadata returns the metadata of a layer restored from the cache,
// nil when there is none.
func ReadLayerMetadata(layersDir, name string) map[string]string {
	var doc struct {
		Metadata map[string]string `toml:"metadata"`
	}
	if _, err := toml.DecodeFile(filepath.Join(layersDir, name+".toml"), &doc); err != nil {
		return nil
	}
	return doc.Metadata
}

// WriteLaunch writes layersDir/launch.toml.
func WriteLaunch(layersDir string, l Launch) error {
	f, err := os.Create(filepath.Join(layersDir, "launch.toml"))
	if err != nil {
		return fmt.Errorf("write launch.toml: %w", err)
	}
	defer f.Close()
	if err := toml.NewEncoder(f).Encode(l); err != nil {
		return fmt.Errorf("write launch.toml: %w", err)
	}
	return nil
}

// BuildpackID reads the id from dir/buildpack.toml.
func BuildpackID(dir string) (string, error) {
	var doc struct {
		Buildpack struct {
			ID string `toml:"id"`
		} `toml:"buildpack"`
	}
	if _, err := toml.DecodeFile(filepath.Join(dir, "buildpack.toml"), &doc); err != nil {
		return "", fmt.Errorf("read buildpack.toml: %w", err)
	}
	if doc.Buildpack.ID == "" {
		return "", errors.New("read buildpack.toml: no buildpack id")
	}
	return doc.Buildpack.ID, nil
}

// ProcfileProcess is one "name: command" line of a Procfile.
type ProcfileProcess struct{ Name, Command string }

// ParseProcfile reads "name: command" lines; blank lines and # comments are skipped.
func ParseProcfile(data []byte) ([]ProcfileProcess, error) {
	var procs []ProcfileProcess
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, cmd, ok := strings.Cut(line, ":")
		name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
		if !ok || name == "" || cmd == "" {
			return nil, fmt.Errorf("Procfile line %d: want \"name: command\", got %q", i+1, line)
		}
		procs = append(procs, ProcfileProcess{Name: name, Command: cmd})
	}
	return procs, nil
}

// ShellProcess runs a Procfile command with the run image's sh, so $PORT and
// other variables expand. A simple command is exec'd, so the app itself gets
// the signals Swarm sends. Arguments given to the process (`run APP worker
// --once`: the launcher adds them after the command) are added to the
// command's last word ("$@", so they are not split again) when the line is
// one simple command; a line with shell syntax (a loop, a pipeline, a list)
// runs as written, since words added after it could break it
// ("while ...; done x" is a syntax error).
func ShellProcess(name, command string) Process {
	if !strings.ContainsAny(command, ";&|()`\n<>{}") {
		command = "exec " + command
		if !strings.ContainsAny(command, "#\\") {
			command += ` "$@"`
		}
	}
	return Process{Type: name, Command: []string{"/bin/sh", "-c", command, "sh"}, Default: name == "web"}
}
