package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"paas/internal/paas"
)

// envExec is the env wrapper an app's tasks start through (paas.EnvExecCommand):
// it adds the config vars paas handed the task as a file to the environment
// and execs the task's command, so the app sees ordinary environment
// variables that no `docker inspect` shows. The file is a JSON list of
// KEY=VALUE; a task without one runs with the environment it has.
func envExec(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "paasd env-exec: no command to run")
		return 127
	}
	env := os.Environ()
	for _, path := range []string{paas.EnvSecretPath, paas.EnvCopyPath} {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var vars []string
		if err := json.Unmarshal(raw, &vars); err != nil {
			fmt.Fprintf(stderr, "paasd env-exec: %s is not a list of KEY=VALUE\n", path)
			return 127
		}
		env = overlay(env, vars)
		if path == paas.EnvCopyPath {
			os.Remove(path) // when the task's user may: it was only needed once
		}
		break
	}
	os.Clearenv()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	bin := args[0]
	if !strings.Contains(bin, "/") {
		p, err := exec.LookPath(bin) // with the task's PATH, as Docker looks it up
		if err != nil {
			fmt.Fprintf(stderr, "paasd env-exec: %s: not found in PATH\n", bin)
			return 127
		}
		bin = p
	}
	err := syscall.Exec(bin, args, os.Environ())
	fmt.Fprintf(stderr, "paasd env-exec: exec %s: %v\n", args[0], err)
	return 126
}

// overlay returns base with over's entries, an entry of over replacing
// base's entry of the same key.
func overlay(base, over []string) []string {
	keys := map[string]bool{}
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
	}
	out := make([]string, 0, len(base)+len(over))
	for _, kv := range base {
		if k, _, _ := strings.Cut(kv, "="); !keys[k] {
			out = append(out, kv)
		}
	}
	return append(out, over...)
}
