// Package commands is the dispatcher behind `ssh paas COMMAND ARGS`: Dokku's
// command names, flags, output formats and exit codes (0 ok, 1 error, 20 app
// does not exist).
package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// Exit codes, as Dokku's.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitNotFound = 20
)

// Command is one `ssh paas NAME ...` command.
type Command struct {
	Name  string
	Args  string // usage, e.g. "APP KEY=VALUE..."
	Help  string
	Flags map[string]bool // flag -> takes a value
	App   bool            // the first positional argument is an app the caller must be able to use
	// NamesApp: the first positional argument names an app that the
	// dispatcher does not resolve (apps:create, events APP); the audit log
	// records it as the event's app.
	NamesApp bool
	Admin    bool // administrators only
	MinArgs  int  // positional arguments required after the app
	// Values: the arguments are KEY=VALUE pairs whose values may hold any
	// text, control characters included (a multi-line certificate); in
	// every other argument a control character is refused.
	Values bool
	// Verbatim: after the app, the first argument that is not a flag (or
	// what follows "--") starts a command line that is taken as it is,
	// flags and all (run APP sh -c 'exit 3').
	Verbatim bool
	// Details is more help, shown by --help and `help COMMAND` only.
	Details string
	Run     func(ctx context.Context, c *Call) error

	// Global: with --global the command acts on the installation instead
	// of an app (Dokku's "(<app>|--global)"), and Call.App stays nil.
	Global bool
	// TrailingDashDash: a "--" that ends the arguments is one ("read
	// stdin", as in Dokku's git:from-archive APP --).
	TrailingDashDash bool
}

// Call is one invocation of a command.
type Call struct {
	ID    paas.Identity
	App   *paas.App         // set when the command takes an app
	Args  []string          // positional arguments after the app
	Flags map[string]string // each flag given, with its (last) value
	Stdin io.Reader
	Out   io.Writer
	Err   io.Writer

	given []flagValue // every flag given, in order
}

type flagValue struct{ name, value string }

// Has reports whether flag was given.
func (c *Call) Has(flag string) bool { _, ok := c.Flags[flag]; return ok }

// Values returns the values of every use of the flags names, in the order
// given: for a flag that may be given more than once (run -e K=V -e K2=V2).
func (c *Call) Values(names ...string) []string {
	var vals []string
	for _, f := range c.given {
		if slices.Contains(names, f.name) {
			vals = append(vals, f.value)
		}
	}
	return vals
}

// exitError carries an exit code other than 1, with a message already printed or empty.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// Set is the registered commands.
type Set struct {
	cmds    map[string]*Command
	version string
}

// AppStore is the lookup the dispatcher needs to resolve an app argument.
type AppStore interface {
	App(name string) (*paas.App, error)
}

// Dispatcher runs commands.
type Dispatcher struct {
	set   *Set
	store AppStore
	audit Auditor
	more  func() []*Command // read at each use (SetMore)
}

// SetMore adds commands read at each use, after the registered ones (which
// keep their names): those of executable plugins, which an operator adds
// and removes while paasd runs.
func (d *Dispatcher) SetMore(more func() []*Command) { d.more = more }

// commands returns every command by name: the registered ones and SetMore's.
func (d *Dispatcher) commands() map[string]*Command {
	if d.more == nil {
		return d.set.cmds
	}
	all := maps.Clone(d.set.cmds)
	for _, c := range d.more() {
		if _, taken := all[c.Name]; !taken {
			all[c.Name] = c
		}
	}
	return all
}

// lookup returns the command name.
func (d *Dispatcher) lookup(name string) (*Command, bool) {
	if cmd, ok := d.set.cmds[name]; ok || d.more == nil {
		return cmd, ok
	}
	for _, c := range d.more() {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// NewDispatcher returns a dispatcher over the given commands.
func NewDispatcher(store AppStore, version string, cmds ...[]*Command) *Dispatcher {
	s := &Set{cmds: map[string]*Command{}, version: version}
	d := &Dispatcher{set: s, store: store}
	for _, group := range cmds {
		for _, c := range group {
			s.cmds[c.Name] = c
		}
	}
	s.cmds["help"] = &Command{Name: "help", Args: "[COMMAND]", Help: "Show the commands, or one command's usage", Run: d.help}
	s.cmds["version"] = &Command{Name: "version", Help: "Show the paas version", Run: func(_ context.Context, c *Call) error {
		fmt.Fprintf(c.Out, "paas %s\n", version)
		return nil
	}}
	return d
}

// RunCommand parses args, checks rights and runs the command, and records it
// in the audit log. It returns the exit code.
func (d *Dispatcher) RunCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := d.runCommand(ctx, id, args, stdin, stdout, stderr)
	code := fail(stderr, err)
	d.record(id, args, code, err)
	return code
}

func (d *Dispatcher) runCommand(ctx context.Context, id paas.Identity, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	global, args, err := globalOptions(args)
	if err != nil {
		return err
	}
	if global.quiet {
		q := &quietWriter{w: stdout}
		defer q.Flush()
		stdout = q
	}
	if len(args) == 0 {
		args = []string{"help"}
	}
	name := args[0]
	if name == "--help" || name == "-h" {
		name = "help"
	}
	if name == "--version" {
		name = "version"
	}
	cmd, ok := d.lookup(name)
	if !ok {
		return fmt.Errorf("`%s` is not a paas command.\nSee `help` for a list of available commands.", sanitize(name))
	}
	if err := validateArgs(cmd, args[1:]); err != nil {
		return err
	}
	call := &Call{ID: id, Flags: map[string]string{}, Stdin: stdin, Out: stdout, Err: stderr}
	pos, err := parseFlags(cmd, args[1:], call)
	if err != nil {
		return fmt.Errorf("%w\n Usage: %s %s", err, cmd.Name, cmd.Args)
	}
	if call.Has("--help") {
		usage(stdout, cmd)
		return nil
	}
	if cmd.Admin && !id.Admin {
		return fmt.Errorf("%s is for administrators only", cmd.Name)
	}
	if global.app != "" {
		if !cmd.App && !cmd.NamesApp {
			return fmt.Errorf("--app: %s does not take an app", cmd.Name)
		}
		pos = append([]string{global.app}, pos...)
	}
	if cmd.App && !(cmd.Global && call.Has("--global")) {
		if len(pos) == 0 {
			return fmt.Errorf("please specify an app name\n Usage: %s %s", cmd.Name, cmd.Args)
		}
		app, err := d.resolveApp(id, pos[0])
		if err != nil {
			return err
		}
		call.App, pos = app, pos[1:]
	}
	if len(pos) < cmd.MinArgs {
		return fmt.Errorf("missing arguments\n Usage: %s %s", cmd.Name, cmd.Args)
	}
	call.Args = pos
	return cmd.Run(ctx, call)
}

// validateArgs refuses a control character in any argument but the value
// of a KEY=VALUE pair of a command that takes them.
func validateArgs(cmd *Command, args []string) error {
	for _, a := range args {
		if k, _, ok := strings.Cut(a, "="); ok && cmd.Values && !strings.HasPrefix(a, "-") {
			a = k
		}
		if err := paas.ValidateArg(a); err != nil {
			return err
		}
	}
	return nil
}

// resolveApp loads an app the identity may use. An app the identity may not
// use is reported exactly like a missing one.
func (d *Dispatcher) resolveApp(id paas.Identity, name string) (*paas.App, error) {
	return usableApp(d.store, id, name)
}

// usableApp loads an app the identity may use, reporting one it may not
// use exactly like a missing one.
func usableApp(store AppStore, id paas.Identity, name string) (*paas.App, error) {
	if err := paas.ValidateAppName(name); err != nil {
		return nil, err
	}
	app, err := store.App(name)
	if errors.Is(err, paas.ErrAppNotFound) || (err == nil && !auth.CanUseApp(id, app)) {
		return nil, notFound(name)
	}
	return app, err
}

func notFound(name string) error {
	return &exitError{code: ExitNotFound, msg: fmt.Sprintf("App %s does not exist", name)}
}

// fail prints err Dokku-style and returns its exit code.
func fail(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if errors.Is(err, paas.ErrAppNotFound) {
		code = ExitNotFound
	}
	if msg := err.Error(); msg != "" {
		for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
			output.Warn(stderr, "%s", strings.TrimPrefix(line, " "))
		}
	}
	return code
}

// globals are Dokku's options before the command: `--app APP` names the app
// of a command that takes one, `--quiet` leaves out the output's header
// lines ("=====> ", "-----> "), `--trace` is accepted and does nothing.
type globals struct {
	app   string
	quiet bool
}

func globalOptions(args []string) (globals, []string, error) {
	var g globals
	for len(args) > 0 {
		name, val, hasVal := strings.Cut(args[0], "=")
		switch name {
		case "--quiet", "--trace":
			if hasVal {
				return g, nil, fmt.Errorf("%s takes no value", name)
			}
			g.quiet = g.quiet || name == "--quiet"
			args = args[1:]
		case "--app":
			if !hasVal {
				if len(args) < 2 {
					return g, nil, errors.New("--app needs an app name")
				}
				val, args = args[1], args[1:]
			}
			g.app = val
			args = args[1:]
		default:
			return g, args, nil
		}
	}
	return g, args, nil
}

// quietWriter drops the header lines of --quiet output.
type quietWriter struct {
	w       io.Writer
	partial []byte
}

func (q *quietWriter) Write(p []byte) (int, error) {
	q.partial = append(q.partial, p...)
	for {
		i := bytes.IndexByte(q.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := q.partial[:i+1]
		if !bytes.HasPrefix(line, []byte("=====> ")) && !bytes.HasPrefix(line, []byte("-----> ")) {
			if _, err := q.w.Write(line); err != nil {
				return 0, err
			}
		}
		q.partial = q.partial[i+1:]
	}
}

// Flush writes what is left of a last line without a newline.
func (q *quietWriter) Flush() {
	if len(q.partial) > 0 {
		q.w.Write(q.partial)
		q.partial = nil
	}
}

// parseFlags sets call's flags from args and returns the positional
// arguments. Flags may come anywhere, except in a Verbatim command's
// command line.
func parseFlags(cmd *Command, args []string, call *Call) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if cmd.TrailingDashDash && i == len(args)-1 {
				pos = append(pos, a)
			}
			pos = append(pos, args[i+1:]...)
			break
		}
		isFlag := len(a) >= 2 && a[0] == '-'
		if cmd.Verbatim && !isFlag && (len(pos) > 0 || !cmd.App) {
			pos = append(pos, args[i:]...)
			break
		}
		if a == "--help" || a == "-h" {
			call.Flags["--help"] = ""
			continue
		}
		if !isFlag {
			pos = append(pos, a)
			continue
		}
		name, val, hasVal := strings.Cut(a, "=")
		takes, ok := cmd.Flags[name]
		if !ok && !hasVal && strings.HasSuffix(cmd.Name, ":report") && strings.HasPrefix(name, "--") {
			call.Flags[name] = "" // a single-value flag: report checks it names a field
			continue
		}
		if !ok {
			return nil, fmt.Errorf("unknown flag %s for %s", sanitize(name), cmd.Name)
		}
		if takes && !hasVal {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s needs a value", name)
			}
			i++
			val = args[i]
		}
		call.Flags[name] = val
		call.given = append(call.given, flagValue{name, val})
	}
	return pos, nil
}

func usage(w io.Writer, cmd *Command) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", cmd.Name, cmd.Args, cmd.Help)
	if cmd.Details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimRight(cmd.Details, "\n"))
	}
	if len(cmd.Flags) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		names := make([]string, 0, len(cmd.Flags))
		for f := range cmd.Flags {
			names = append(names, f)
		}
		sort.Strings(names)
		for _, f := range names {
			if cmd.Flags[f] {
				fmt.Fprintf(w, "    %s VALUE\n", f)
			} else {
				fmt.Fprintf(w, "    %s\n", f)
			}
		}
	}
}

func (d *Dispatcher) help(_ context.Context, c *Call) error {
	if len(c.Args) > 0 {
		cmd, ok := d.lookup(c.Args[0])
		if !ok {
			return fmt.Errorf("`%s` is not a paas command", sanitize(c.Args[0]))
		}
		usage(c.Out, cmd)
		return nil
	}
	cmds := d.commands()
	names := make([]string, 0, len(cmds))
	width := 0
	for n, cmd := range cmds {
		names = append(names, n)
		width = max(width, len(n)+1+len(cmd.Args))
	}
	sort.Strings(names)
	fmt.Fprintf(c.Out, "Usage: ssh paas COMMAND [ARGS] [--help]\n\nCommands:\n")
	for _, n := range names {
		cmd := cmds[n]
		if cmd.Admin && !c.ID.Admin {
			continue
		}
		fmt.Fprintf(c.Out, "    %-*s  %s\n", width, strings.TrimSpace(n+" "+cmd.Args), cmd.Help)
	}
	return nil
}

// sanitize makes user input safe to print on a terminal: control characters
// (C0, DEL, C1 such as the one-byte CSI U+009B, and format characters such as
// bidi overrides) and invalid UTF-8 are shown quoted, never replayed raw.
func sanitize(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || (r != ' ' && !unicode.IsPrint(r)) {
			q := strconv.Quote(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}
