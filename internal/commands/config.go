package commands

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"

	"paas/internal/output"
	"paas/internal/paas"
)

var exportFormats = []string{"exports", "envfile", "docker-args", "docker-args-keys", "shell", "pretty", "json", "json-list", "pack-keys"}

func (p *Platform) configCommands() []*Command {
	restart := map[string]bool{"--no-restart": false, "--encoded": false, "--global": false}
	read := map[string]bool{"--format": true, "--merged": false, "--global": false}
	show := &Command{Name: "config:show", Args: "(APP|--global) [--merged]", Help: "Show an app's config vars (--merged: with the global ones it inherits; --global: those every app inherits)", App: true, Global: true, Flags: read, Run: p.configShow}
	bare := *show
	bare.Name = "config"
	return []*Command{
		show, &bare,
		{Name: "config:get", Args: "(APP|--global) KEY", Help: "Print one config value (exit 1 when unset)", App: true, Global: true, MinArgs: 1, Flags: map[string]bool{"--quoted": false, "--global": false, "--merged": false}, Run: p.configGet},
		{Name: "config:keys", Args: "(APP|--global) [--merged]", Help: "List an app's config keys", App: true, Global: true, Flags: map[string]bool{"--global": false, "--merged": false}, Run: p.configKeys},
		{Name: "config:set", Args: "[--no-restart] [--encoded] (APP|--global) KEY=VALUE...", Help: "Set config vars and roll out a new release (--encoded: values are base64; --global: every app inherits them at its next release, administrators)", App: true, Global: true, MinArgs: 1, Flags: restart, Values: true, Run: p.configSet},
		{Name: "config:unset", Args: "[--no-restart] (APP|--global) KEY...", Help: "Unset config vars and roll out a new release", App: true, Global: true, MinArgs: 1, Flags: map[string]bool{"--no-restart": false, "--global": false}, Run: p.configUnset},
		{Name: "config:clear", Args: "[--no-restart] (APP|--global)", Help: "Unset every config var and roll out a new release", App: true, Global: true, Flags: map[string]bool{"--no-restart": false, "--global": false}, Run: p.configClear},
		{Name: "config:import", Args: "[--replace] [--no-restart] [--format envfile|json] (APP|--global) -", Help: "Set config vars read from stdin: an env file (KEY=value lines, as config:export --format envfile writes) or JSON; --replace unsets the others", App: true, Global: true, MinArgs: 1,
			Flags: map[string]bool{"--replace": false, "--no-restart": false, "--format": true, "--global": false}, Run: p.configImport},
		{Name: "config:export", Args: "[--format FORMAT] [--merged] (APP|--global)", Help: "Export config vars; FORMAT is " + strings.Join(exportFormats, "|"), App: true, Global: true, Flags: read, Run: p.configExport},
	}
}

// configOf returns the config a reading command shows: the app's, merged
// over the global one with --merged, or the global one (c.App nil).
func (p *Platform) configOf(c *Call) (map[string]string, error) {
	if c.App != nil && !c.Has("--merged") {
		return nonNil(c.App.Config), nil
	}
	global, err := p.Store.GlobalConfig()
	if err != nil || c.App == nil {
		return global, err
	}
	return paas.MergeConfig(global, c.App.Config), nil
}

// configName is what a config command acts on: the app, or "global".
func configName(c *Call) string {
	if c.App == nil {
		return "global"
	}
	return c.App.Name
}

func (p *Platform) configShow(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, nonNil(cfg))
	}
	output.Header(c.Out, "%s env vars", configName(c))
	return exportConfig(c.Out, "pretty", cfg)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (p *Platform) configGet(_ context.Context, c *Call) error {
	key := c.Args[0]
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[1:], " ")))
	}
	if err := paas.ValidateConfigKey(key); err != nil {
		return err
	}
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	v, ok := cfg[key]
	if !ok {
		return &exitError{code: ExitError}
	}
	if c.Has("--quoted") {
		v = shellQuote(v)
	}
	fmt.Fprintln(c.Out, v)
	return nil
}

func (p *Platform) configKeys(_ context.Context, c *Call) error {
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	for _, k := range paas.SortedKeys(cfg) {
		fmt.Fprintln(c.Out, k)
	}
	return nil
}

func (p *Platform) configSet(ctx context.Context, c *Call) error {
	if err := globalAdmin(c); err != nil {
		return err
	}
	pairs := map[string]string{}
	var order []string
	for _, arg := range c.Args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("Invalid env pair: %s (expected KEY=VALUE)", sanitize(arg))
		}
		if err := paas.ValidateConfigKey(k); err != nil {
			return err
		}
		if c.Has("--encoded") {
			dec, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return fmt.Errorf("value of %s is not base64: %v", k, err)
			}
			v = string(dec)
		}
		if err := paas.ValidateConfigValue(k, v); err != nil {
			return err
		}
		if err := p.checkConfigValue(k, v); err != nil {
			return err
		}
		if _, dup := pairs[k]; !dup {
			order = append(order, k)
		}
		pairs[k] = v
	}
	set := func(cfg map[string]string) error {
		maps.Copy(cfg, pairs)
		return p.checkConfigSize(configName(c), cfg)
	}
	// Checked before anything is printed, and again under the app's lock.
	current := map[string]string{}
	if c.App != nil {
		current = maps.Clone(nonNil(c.App.Config))
	}
	if err := set(current); err != nil {
		return err
	}
	output.Step(c.Out, "Setting config vars")
	width := 0
	for _, k := range order {
		width = max(width, len(k)+1)
	}
	for _, k := range order {
		output.Detail(c.Out, "%-*s  %s", width, k+":", sanitize(pairs[k]))
	}
	if c.App == nil {
		return p.setGlobalConfig(c, func(cfg map[string]string) { maps.Copy(cfg, pairs) })
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, "config:set "+strings.Join(order, " "), !c.Has("--no-restart"), set, c.Out)
}

// checkConfigValue refuses a value larger than Limits.MaxConfigValue.
func (p *Platform) checkConfigValue(k, v string) error {
	if max := p.Limits.MaxConfigValue; max > 0 && len(v) > max {
		return refuse("the value of %s is %s, more than the %s a config value may hold here (paasd serve --max-config-value); nothing was changed",
			k, units.BytesSize(float64(len(v))), units.BytesSize(float64(max)))
	}
	return nil
}

// checkConfigSize refuses a config larger than Limits.MaxConfigSize: every
// task's environment carries it, and every release keeps a copy.
func (p *Platform) checkConfigSize(app string, cfg map[string]string) error {
	max := p.Limits.MaxConfigSize
	if max <= 0 {
		return nil
	}
	size := 0
	for k, v := range cfg {
		size += len(k) + 1 + len(v)
	}
	if size > max {
		return refuse("the config of %s would be %s, more than the %s an app's config may hold here (paasd serve --max-config-size); nothing was changed",
			app, units.BytesSize(float64(size)), units.BytesSize(float64(max)))
	}
	return nil
}

func (p *Platform) configUnset(ctx context.Context, c *Call) error {
	if err := globalAdmin(c); err != nil {
		return err
	}
	for _, k := range c.Args {
		if err := paas.ValidateConfigKey(k); err != nil {
			return err
		}
	}
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	var unset []string
	for _, k := range c.Args {
		if _, ok := cfg[k]; !ok {
			output.Step(c.Out, "Skipping %s, it is not set in the environment", k)
			continue
		}
		if !slices.Contains(unset, k) {
			output.Step(c.Out, "Unsetting %s", k)
			unset = append(unset, k)
		}
	}
	if len(unset) == 0 {
		return nil // nothing changes: no new release
	}
	del := func(cfg map[string]string) {
		for _, k := range unset {
			delete(cfg, k)
		}
	}
	if c.App == nil {
		return p.setGlobalConfig(c, del)
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, "config:unset "+strings.Join(unset, " "), !c.Has("--no-restart"), func(cfg map[string]string) error {
		del(cfg)
		return nil
	}, c.Out)
}

// configClear unsets every config var (config:clear).
func (p *Platform) configClear(ctx context.Context, c *Call) error {
	if err := globalAdmin(c); err != nil {
		return err
	}
	if len(c.Args) > 0 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args, " ")))
	}
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	if len(cfg) == 0 {
		output.Step(c.Out, "%s has no config vars", configName(c))
		return nil
	}
	for _, k := range paas.SortedKeys(cfg) {
		output.Step(c.Out, "Unsetting %s", k)
	}
	if c.App == nil {
		return p.setGlobalConfig(c, func(cfg map[string]string) { clear(cfg) })
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, "config:clear", !c.Has("--no-restart"), func(cfg map[string]string) error {
		clear(cfg)
		return nil
	}, c.Out)
}

// maxImport bounds what config:import reads from stdin.
const maxImport = 1 << 20

// configImport sets the config vars of an env file or a JSON object read
// from stdin (config:import APP -), Dokku's formats.
func (p *Platform) configImport(ctx context.Context, c *Call) error {
	if err := globalAdmin(c); err != nil {
		return err
	}
	if len(c.Args) != 1 || c.Args[0] != "-" {
		return errors.New("config:import reads stdin only: give - as the file (config:import APP - < .env)")
	}
	format := cmp.Or(c.Flags["--format"], "envfile")
	output.Step(c.Out, "Reading config vars from stdin")
	data, err := io.ReadAll(io.LimitReader(c.Stdin, maxImport+1))
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	if len(data) > maxImport {
		return fmt.Errorf("stdin holds more than %d bytes of config; nothing was changed", maxImport)
	}
	pairs, err := parseImport(format, data)
	if err != nil {
		return err
	}
	if len(pairs) == 0 {
		return errors.New("No config vars to set")
	}
	keys := paas.SortedKeys(pairs)
	for _, k := range keys {
		if err := paas.ValidateConfigKey(k); err != nil {
			return fmt.Errorf("%s; nothing was changed", sanitize(err.Error()))
		}
		if err := paas.ValidateConfigValue(k, pairs[k]); err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		if err := p.checkConfigValue(k, pairs[k]); err != nil {
			return err
		}
	}
	if c.App != nil {
		cfg := maps.Clone(nonNil(c.App.Config))
		if c.Has("--replace") {
			clear(cfg)
		}
		maps.Copy(cfg, pairs)
		if err := p.checkConfigSize(c.App.Name, cfg); err != nil {
			return err
		}
	}
	output.Step(c.Out, "Setting config vars")
	if err := exportConfig(c.Out, "pretty", pairs); err != nil {
		return err
	}
	replace := c.Has("--replace")
	apply := func(cfg map[string]string) {
		if replace {
			clear(cfg)
		}
		maps.Copy(cfg, pairs)
	}
	if c.App == nil {
		return p.setGlobalConfig(c, apply)
	}
	reason := "config:import " + strings.Join(keys, " ")
	if replace {
		reason = "config:import --replace " + strings.Join(keys, " ")
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, reason, !c.Has("--no-restart"), func(cfg map[string]string) error {
		apply(cfg)
		return p.checkConfigSize(c.App.Name, cfg)
	}, c.Out)
}

// parseImport reads config:import's input: an env file or a JSON object of
// strings.
func parseImport(format string, data []byte) (map[string]string, error) {
	switch format {
	case "envfile":
		return parseEnvfile(string(data))
	case "json":
		var pairs map[string]string
		if err := json.Unmarshal(data, &pairs); err != nil {
			return nil, fmt.Errorf("read JSON: want an object of string values: %s", sanitize(err.Error()))
		}
		return pairs, nil
	default:
		return nil, fmt.Errorf("unknown format %q: use envfile or json", sanitize(format))
	}
}

// parseEnvfile reads an env file as Dokku writes and reads them (its
// config files and config:export --format envfile): one KEY=value per line,
// optionally after "export "; blank lines and # comments skipped. A value
// is bare (trimmed, up to a " #" comment), 'single-quoted' (taken as it is,
// across lines), or "double-quoted" (across lines, with \n \r \t and a
// backslash before any other character standing for that character). No
// variable is expanded. Unlike godotenv, which Dokku uses, a value that
// begins or ends with a quote or ends with a backslash reads back as written.
func parseEnvfile(src string) (map[string]string, error) {
	out := map[string]string{}
	line := 1
	fail := func(format string, args ...any) (map[string]string, error) {
		return nil, fmt.Errorf("env file line %d: %s", line, sanitize(fmt.Sprintf(format, args...)))
	}
	for src != "" {
		// one entry: skip blank space, comments and an "export " prefix
		trimmed := strings.TrimLeft(src, " \t\r")
		if trimmed == "" {
			break
		}
		switch trimmed[0] {
		case '\n':
			src, line = trimmed[1:], line+1
			continue
		case '#':
			end := strings.IndexByte(trimmed, '\n')
			if end < 0 {
				return out, nil
			}
			src = trimmed[end:]
			continue
		}
		src = strings.TrimPrefix(trimmed, "export ")
		eq := strings.IndexByte(src, '=')
		if nl := strings.IndexByte(src, '\n'); eq < 0 || (nl >= 0 && nl < eq) {
			end := len(src)
			if nl >= 0 {
				end = nl
			}
			return fail("want KEY=value, got %q", src[:end])
		}
		key := strings.TrimSpace(src[:eq])
		if err := paas.ValidateConfigKey(key); err != nil {
			return fail("%v", err)
		}
		src = strings.TrimLeft(src[eq+1:], " \t")
		var val string
		switch {
		case strings.HasPrefix(src, "'"):
			end := strings.IndexByte(src[1:], '\'')
			if end < 0 {
				return fail("unterminated single-quoted value of %s", key)
			}
			val, src = src[1:1+end], src[2+end:]
			line += strings.Count(val, "\n")
		case strings.HasPrefix(src, `"`):
			var b strings.Builder
			i, closed := 1, false
			for ; i < len(src); i++ {
				c := src[i]
				if c == '"' {
					closed = true
					break
				}
				if c != '\\' || i+1 == len(src) {
					b.WriteByte(c)
					continue
				}
				i++
				switch src[i] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(src[i])
				}
			}
			if !closed {
				return fail("unterminated double-quoted value of %s", key)
			}
			line += strings.Count(src[:i], "\n")
			val, src = b.String(), src[i+1:]
		default:
			end := strings.IndexByte(src, '\n')
			if end < 0 {
				end = len(src)
			}
			val, src = src[:end], src[end:]
			if i := strings.Index(val, " #"); i >= 0 {
				val = val[:i]
			}
			val = strings.TrimSpace(val)
		}
		// after a quoted value: spaces and a comment up to the line's end
		rest := src
		if end := strings.IndexByte(rest, '\n'); end >= 0 {
			rest = rest[:end]
		}
		if r := strings.TrimSpace(rest); r != "" && !strings.HasPrefix(r, "#") {
			return fail("unexpected %q after the value of %s", r, key)
		}
		src = src[len(rest):]
		out[key] = val
	}
	return out, nil
}

// globalAdmin refuses a change of the global config to a non-administrator.
func globalAdmin(c *Call) error {
	if c.App == nil && !c.ID.Admin {
		return errors.New("--global config is for administrators only")
	}
	return nil
}

// setGlobalConfig applies fn to the global config vars, which apps take at
// their next release (Dokku does not restart apps for them either).
func (p *Platform) setGlobalConfig(c *Call, fn func(cfg map[string]string)) error {
	if err := p.Store.UpdateGlobalConfig(func(cfg map[string]string) error { fn(cfg); return nil }); err != nil {
		return err
	}
	output.Step(c.Out, "Apps take the global config at their next release (a push, a config change, ps:rebuild)")
	return nil
}

func (p *Platform) configExport(_ context.Context, c *Call) error {
	cfg, err := p.configOf(c)
	if err != nil {
		return err
	}
	return exportConfig(c.Out, cmp.Or(c.Flags["--format"], "exports"), cfg)
}

// exportConfig writes cfg in one of Dokku's config:export formats, quoted as
// Dokku quotes them: single quotes for the shell formats (a ' as '\”), the
// env file as godotenv writes it (double quotes with \ " ! $ ` and newlines
// escaped; a plain integer bare).
func exportConfig(w io.Writer, format string, cfg map[string]string) error {
	keys := paas.SortedKeys(cfg)
	joined := func(prefix, sep, suffix string) {
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = prefix + k + "=" + shellQuote(cfg[k])
		}
		fmt.Fprint(w, strings.Join(parts, sep)+suffix)
	}
	keyList := func(prefix string) {
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = prefix + k
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	}
	switch format {
	case "exports":
		joined("export ", "\n", "\n")
	case "docker-args":
		joined("--env=", " ", "\n")
	case "shell":
		joined("", " ", " ") // Dokku's: one line ending in a space
	case "envfile":
		lines := make([]string, len(keys))
		for i, k := range keys {
			lines[i] = k + "=" + envfileValue(cfg[k])
		}
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	case "docker-args-keys":
		keyList("--env=")
	case "pack-keys":
		keyList("--env ")
	case "pretty":
		width := 0
		for _, k := range keys {
			width = max(width, len(k)+1)
		}
		for _, k := range keys {
			fmt.Fprintf(w, "%-*s  %s\n", width, k+":", sanitize(cfg[k]))
		}
	case "json":
		return output.JSON(w, cfg)
	case "json-list":
		type pair struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		list := make([]pair, 0, len(keys))
		for _, k := range keys {
			list = append(list, pair{k, cfg[k]})
		}
		return output.JSON(w, list)
	default:
		return fmt.Errorf("unknown format %q: use one of %s", sanitize(format), strings.Join(exportFormats, ", "))
	}
	return nil
}

// shellQuote quotes s for a POSIX shell: single quotes, with ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// envfileValue writes s as godotenv (Dokku's env file library) does: a
// plain integer bare, anything else double-quoted with \ newline CR " ! $
// and ` escaped. Unlike godotenv, "007" stays quoted (godotenv writes 7).
func envfileValue(s string) string {
	if n, err := strconv.Atoi(s); err == nil && strconv.Itoa(n) == s {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, `"`, `\"`, "!", `\!`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}
