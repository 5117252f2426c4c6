package plugins

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Executable plugins add commands as Dokku's do, with executables in a
// subcommands folder: DIR/PLUGIN/subcommands/SUB is the command PLUGIN:SUB.
// An optional SUB.help file describes it:
//
//	args: APP [--force] NAME
//	flags: --force --keep=
//	Help text, one line or more.
//
// Access follows the usage: a command whose args start with APP takes an app
// the caller must be able to use (checked by the dispatcher, which passes the
// app name as the first argument); any other command is for administrators
// only. Flags not listed are refused. Commands are read each time they are
// looked up (Registry.ExecCommands).

var subcommandRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Commands returns the commands the executable plugins add.
func (d *Dir) Commands() ([]ExecCommand, error) {
	list, err := d.Plugins()
	if err != nil {
		return nil, err
	}
	var out []ExecCommand
	for _, p := range list {
		dir := filepath.Join(d.path, p.Name, "subcommands")
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !subcommandRe.MatchString(e.Name()) {
				continue
			}
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				continue
			}
			c := ExecCommand{Plugin: p.Name, Command: Command{Name: p.Name + ":" + e.Name(), Flags: map[string]bool{}}}
			c.readHelp(filepath.Join(dir, e.Name()+".help"))
			c.Run = d.runCommand(p.Name, e.Name(), c.App)
			out = append(out, c)
		}
	}
	return out, nil
}

// ExecCommand is a command of an executable plugin.
type ExecCommand struct {
	Plugin string
	Command
}

func (c *ExecCommand) readHelp(path string) {
	data, _ := os.ReadFile(path)
	var help []string
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "args:"):
			c.Args = strings.TrimSpace(strings.TrimPrefix(line, "args:"))
		case strings.HasPrefix(line, "flags:"):
			for _, f := range strings.Fields(strings.TrimPrefix(line, "flags:")) {
				name, takes := strings.CutSuffix(f, "=")
				if strings.HasPrefix(name, "-") {
					c.Flags[name] = takes
				}
			}
		case strings.TrimSpace(line) != "":
			help = append(help, strings.TrimSpace(line))
		}
	}
	c.Help = strings.Join(help, " ")
	if c.Help == "" {
		c.Help = "Added by the " + c.Plugin + " plugin"
	}
	c.App = c.Args == "APP" || strings.HasPrefix(c.Args, "APP ")
	c.Admin = !c.App
}

// runCommand runs DIR/PLUGIN/subcommands/SUB with the app (if any), the
// positional arguments and the flags as its argv (no shell), the session's
// stdin, stdout and stderr, the caller in PAAS_USER, under the timeout.
func (d *Dir) runCommand(plugin, sub string, withApp bool) func(ctx context.Context, c *Call) error {
	return func(ctx context.Context, c *Call) error {
		var argv []string
		if withApp && c.App != nil {
			argv = append(argv, c.App.Name)
		}
		argv = append(argv, c.Args...)
		for _, f := range slices.Sorted(maps.Keys(c.Flags)) {
			if v := c.Flags[f]; v != "" {
				argv = append(argv, f+"="+v)
			} else {
				argv = append(argv, f)
			}
		}
		stdin := c.Stdin
		if stdin == nil {
			stdin = strings.NewReader("")
		}
		err := d.exec(ctx, plugin, filepath.Join(d.path, plugin, "subcommands", sub), argv, Event{Trigger: plugin + ":" + sub, User: c.ID}, stdin, c.Out, c.Err)
		if err != nil {
			return fmt.Errorf("%s:%s %w", plugin, sub, err)
		}
		return nil
	}
}
