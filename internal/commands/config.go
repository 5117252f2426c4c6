package commands

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/docker/go-units"

	"paas/internal/paas"
)

var exportFormats = []string{"exports", "envfile", "docker-args", "shell", "json", "json-list"}

func (p *Platform) configCommands() []*Command {
	restart := map[string]bool{"--no-restart": false, "--encoded": false}
	return []*Command{
		{Name: "config:show", Args: "APP", Help: "Show an app's config vars", App: true, Flags: formatFlag, Run: p.configShow},
		{Name: "config:get", Args: "APP KEY", Help: "Print one config value (exit 1 when unset)", App: true, MinArgs: 1, Flags: map[string]bool{"--quoted": false}, Run: p.configGet},
		{Name: "config:keys", Args: "APP", Help: "List an app's config keys", App: true, Run: p.configKeys},
		{Name: "config:set", Args: "[--no-restart] [--encoded] APP KEY=VALUE...", Help: "Set config vars and roll out a new release (--encoded: values are base64)", App: true, MinArgs: 1, Flags: restart, Values: true, Run: p.configSet},
		{Name: "config:unset", Args: "[--no-restart] APP KEY...", Help: "Unset config vars and roll out a new release", App: true, MinArgs: 1, Flags: map[string]bool{"--no-restart": false}, Run: p.configUnset},
		{Name: "config:export", Args: "[--format FORMAT] APP", Help: "Export config vars; FORMAT is " + strings.Join(exportFormats, "|"), App: true, Flags: formatFlag, Run: p.configExport},
	}
}

func (p *Platform) configShow(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	cfg := c.App.Config
	if asJSON {
		return writeJSON(c.Out, nonNil(cfg))
	}
	fmt.Fprintf(c.Out, "=====> %s env vars\n", c.App.Name)
	width := 0
	for k := range cfg {
		width = max(width, len(k)+1)
	}
	for _, k := range paas.SortedKeys(cfg) {
		fmt.Fprintf(c.Out, "%-*s  %s\n", width, k+":", sanitize(cfg[k]))
	}
	return nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (p *Platform) configGet(_ context.Context, c *Call) error {
	key := c.Args[0]
	if err := paas.ValidateConfigKey(key); err != nil {
		return err
	}
	v, ok := c.App.Config[key]
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
	for _, k := range paas.SortedKeys(c.App.Config) {
		fmt.Fprintln(c.Out, k)
	}
	return nil
}

func (p *Platform) configSet(ctx context.Context, c *Call) error {
	pairs := map[string]string{}
	var order []string
	for _, arg := range c.Args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("expected KEY=VALUE, got %q", sanitize(arg))
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
		if max := p.Limits.MaxConfigValue; max > 0 && len(v) > max {
			return refuse("the value of %s is %s, more than the %s a config value may hold here (paasd serve --max-config-value); nothing was changed",
				k, units.BytesSize(float64(len(v))), units.BytesSize(float64(max)))
		}
		if _, dup := pairs[k]; !dup {
			order = append(order, k)
		}
		pairs[k] = v
	}
	set := func(cfg map[string]string) error {
		for k, v := range pairs {
			cfg[k] = v
		}
		return p.checkConfigSize(c.App.Name, cfg)
	}
	// Checked before anything is printed, and again under the app's lock.
	if err := set(maps.Clone(nonNil(c.App.Config))); err != nil {
		return err
	}
	fmt.Fprintln(c.Out, "-----> Setting config vars")
	width := 0
	for _, k := range order {
		width = max(width, len(k)+1)
	}
	for _, k := range order {
		fmt.Fprintf(c.Out, "       %-*s  %s\n", width, k+":", sanitize(pairs[k]))
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, "config:set "+strings.Join(order, " "), !c.Has("--no-restart"), set, c.Out)
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
	for _, k := range c.Args {
		if err := paas.ValidateConfigKey(k); err != nil {
			return err
		}
	}
	for _, k := range c.Args {
		fmt.Fprintf(c.Out, "-----> Unsetting %s\n", k)
	}
	return p.Pipeline.SetConfig(ctx, c.App.Name, c.ID, "config:unset "+strings.Join(c.Args, " "), !c.Has("--no-restart"), func(cfg map[string]string) error {
		for _, k := range c.Args {
			delete(cfg, k)
		}
		return nil
	}, c.Out)
}

func (p *Platform) configExport(_ context.Context, c *Call) error {
	format := c.Flags["--format"]
	if format == "" {
		format = "exports"
	}
	return exportConfig(c.Out, format, nonNil(c.App.Config))
}

// exportConfig writes cfg in one of Dokku's config:export formats.
func exportConfig(w io.Writer, format string, cfg map[string]string) error {
	keys := paas.SortedKeys(cfg)
	switch format {
	case "exports":
		for _, k := range keys {
			fmt.Fprintf(w, "export %s=%s\n", k, shellQuote(cfg[k]))
		}
	case "envfile":
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%s\n", k, dquote(cfg[k]))
		}
	case "docker-args":
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, "--env="+shellQuote(k+"="+cfg[k]))
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	case "shell":
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, k+"="+shellQuote(cfg[k]))
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	case "json":
		return writeJSON(w, cfg)
	case "json-list":
		type pair struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		list := make([]pair, 0, len(keys))
		for _, k := range keys {
			list = append(list, pair{k, cfg[k]})
		}
		return writeJSON(w, list)
	default:
		return fmt.Errorf("unknown format %q: use one of %s", sanitize(format), strings.Join(exportFormats, ", "))
	}
	return nil
}

// shellQuote quotes s for a POSIX shell: single quotes, with ' written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dquote writes s as a double-quoted dotenv value.
func dquote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "$", `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}
