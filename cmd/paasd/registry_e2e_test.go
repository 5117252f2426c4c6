package main

// Script commands for the registry scenarios.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// setenv-stdout VAR REGEXP: set $VAR to the first group of REGEXP in the
	// previous command's standard output.
	scriptCmds["setenv-stdout"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: setenv-stdout VAR REGEXP")
		}
		re, err := regexp.Compile(args[1])
		ts.Check(err)
		m := re.FindStringSubmatch(ts.ReadFile("stdout"))
		if len(m) < 2 {
			ts.Fatalf("%q not in the standard output", args[1])
		}
		ts.Setenv(args[0], m[1])
	}
	// registry-blob DIGEST: wait up to 30 s until the embedded registry's
	// storage holds the blob DIGEST (with !: until it no longer does; its
	// garbage is collected once the registry has been quiet for 5 s).
	scriptCmds["registry-blob"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || !strings.HasPrefix(args[0], "sha256:") || len(args[0]) != len("sha256:")+64 {
			ts.Fatalf("usage: registry-blob sha256:HEX")
		}
		hex := strings.TrimPrefix(args[0], "sha256:")
		path := filepath.Join(ts.Getenv("DATA_DIR"), "registry", "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			_, err := os.Stat(path)
			if (err == nil) != neg {
				return
			}
			if time.Now().After(deadline) {
				if neg {
					ts.Fatalf("blob %s still stored after 30 s", args[0])
				}
				ts.Fatalf("blob %s not stored: %v", args[0], err)
			}
		}
	}
}
