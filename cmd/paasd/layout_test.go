package main

import (
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLayout holds the layers of the README's "Code layout" to their
// order: a package imports none of a layer above its own.
func TestLayout(t *testing.T) {
	layer := func(pkg string) float64 {
		switch {
		case pkg == "paas/cmd/paasd" || pkg == "paas/internal/daemon":
			return 5 // wiring
		case pkg == "paas/internal/commands" || strings.HasPrefix(pkg, "paas/plugins/"):
			return 4 // commands (and the plugins compiled in)
		case pkg == "paas/gitreceive" || pkg == "paas/internal/web" || pkg == "paas/internal/dashboard" || pkg == "paas/internal/deploy":
			return 3 // pipeline, and the doors: SSH and HTTP
		case pkg == "paas/internal/paas":
			return 1 // the shared domain types, at the bottom
		case pkg == "paas/plugins" || pkg == "paas/router/contract" || pkg == "paas/internal/output" ||
			pkg == "paas/internal/applock" || pkg == "paas/internal/connlimit":
			return 1.5 // contracts: the plugin API, the router's wire contract, output lines, locks
		case pkg == "paas/router/engine":
			return 1.75 // the router's engine: below router, which imports it (see engineImports)
		case strings.HasPrefix(pkg, "paas/internal/clustertest") || strings.HasPrefix(pkg, "paas/internal/loopback") ||
			strings.HasPrefix(pkg, "paas/internal/directory/slapdtest") || strings.HasPrefix(pkg, "paas/internal/oidctest") ||
			strings.HasPrefix(pkg, "paas/internal/browsertest") ||
			strings.HasPrefix(pkg, "paas/scripts/"):
			return 0 // test support and tools: not held
		default:
			return 2 // the card's parts
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "paas/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, l := fields[0], layer(fields[0])
		if l == 0 {
			continue
		}
		checked++
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, "paas/") {
				continue
			}
			if il := layer(imp); il > l || (il == l && l < 2) {
				t.Errorf("%s (layer %v) imports %s (layer %v)", pkg, l, imp, il)
			}
			if pkg == "paas/router/engine" && !engineImports[imp] {
				t.Errorf("%s imports %s: the engine may import only %v of paas (and the standard and x libraries)", pkg, imp, slices.Sorted(maps.Keys(engineImports)))
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d packages: go list gave too few", checked)
	}
}

// engineImports are the packages of paas that router/engine may import: it
// knows nothing of routes, configuration or Docker, only what its Host
// (the router) tells it.
var engineImports = map[string]bool{"paas/internal/connlimit": true}

// TestCodeMap keeps the README's "Code map" in step with the tree: every
// package is named in it (a sub-package may be covered by its parent's
// entry, as builder/buildpacks by builder's).
func TestCodeMap(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	start := strings.Index(readme, "### Code map")
	if start < 0 {
		t.Fatal(`README.md has no "### Code map" section`)
	}
	section := readme[start:]
	if end := strings.Index(section[1:], "\n#"); end > 0 {
		section = section[:end+1]
	}
	out, err := exec.Command("go", "list", "paas/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !named(section, strings.TrimPrefix(pkg, "paas/")) {
			t.Errorf("README.md's Code map does not name %s", pkg)
		}
	}
}

// named reports whether section names the package rel, or one of its
// parents followed by "/..." (as `scripts/...`).
func named(section, rel string) bool {
	if strings.Contains(section, "`"+rel+"`") {
		return true
	}
	for dir := rel; strings.Contains(dir, "/"); {
		dir = dir[:strings.LastIndex(dir, "/")]
		if strings.Contains(section, "`"+dir+"/...`") {
			return true
		}
	}
	return false
}
