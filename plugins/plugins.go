// Package plugins runs triggers at the hook points of the pipeline. Executable
// plugins live in a directory, one folder per plugin, one executable per trigger
// (Dokku's layout: DIR/PLUGIN/TRIGGER), and are run directly, never through a shell.
package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultTimeout bounds one trigger run.
const DefaultTimeout = 2 * time.Minute

// Dir runs executable plugins found under a directory.
type Dir struct {
	path    string
	timeout time.Duration
	log     *slog.Logger
}

// NewDir returns the plugins under path; a missing directory has no plugins.
func NewDir(path string, timeout time.Duration, log *slog.Logger) *Dir {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Dir{path: path, timeout: timeout, log: log}
}

// Trigger runs every plugin's executable named name, in plugin name order, with
// args as its arguments. Output goes to out. A failure of a trigger whose name
// starts with "pre-" stops at once with the plugin's message.
func (d *Dir) Trigger(ctx context.Context, name string, args []string, out io.Writer) error {
	if d.path == "" {
		return nil
	}
	entries, err := os.ReadDir(d.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read plugins dir: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var errs []error
	for _, plugin := range names {
		exe := filepath.Join(d.path, plugin, name)
		fi, err := os.Stat(exe)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		if err := d.run(ctx, plugin, exe, args, out); err != nil {
			if strings.HasPrefix(name, "pre-") {
				return err
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *Dir) run(ctx context.Context, plugin, exe string, args []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = filepath.Dir(exe)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("plugin %s: %s timed out after %s", plugin, filepath.Base(exe), d.timeout)
	}
	if err != nil {
		d.log.Warn("plugin trigger failed", "plugin", plugin, "trigger", filepath.Base(exe), "err", err)
		return fmt.Errorf("plugin %s: %s failed: %w", plugin, filepath.Base(exe), err)
	}
	return nil
}
