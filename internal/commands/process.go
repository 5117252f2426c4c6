package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"paas/internal/auth"
	"paas/internal/output"
	"paas/internal/paas"
)

// processCommands are Dokku's ps:set, ps:inspect and ps:retire.
func (p *Platform) processCommands() []*Command {
	return []*Command{
		{Name: "ps:set", Args: "APP procfile-path [PATH]", Help: "Read pushes' Procfile from PATH (relative to the repository's root) instead of Procfile; no PATH: back to Procfile", App: true, MinArgs: 1, Run: p.psSet},
		{Name: "ps:inspect", Args: "APP", Help: "Show docker inspect of the app's containers (Swarm tasks elsewhere), JSON, with config values masked", App: true, Run: p.psInspect},
		{Name: "ps:retire", Args: "[APP]", Help: "Remove what interrupted rollouts left of the app (of every app you may use without APP)", NamesApp: true, Run: p.psRetire},
	}
}

// psProperties are the ps:set properties of Dokku's that paas does not
// have, with why.
var psProperties = map[string]string{
	"restart-policy":       "tasks are always restarted by Swarm, after 2 s",
	"stop-timeout-seconds": "a task gets SIGTERM once the router has drained it (checks:set wait-to-retire)",
	"restore":              "apps run as Swarm services, which Docker restarts itself",
	"start-cmd":            "use the Procfile",
	"dockerfile-start-cmd": "use the Procfile",
	"skip-deploy":          "use ps:scale --skip-deploy or config:set --no-restart",
}

func (p *Platform) psSet(_ context.Context, c *Call) error {
	prop := c.Args[0]
	if why, ok := psProperties[prop]; ok {
		return fmt.Errorf("paas has no ps property %s: %s", prop, why)
	}
	if prop != "procfile-path" {
		return fmt.Errorf("unknown property %q: use procfile-path", sanitize(prop))
	}
	if len(c.Args) > 2 {
		return errors.New("ps:set takes one property and at most one value")
	}
	path := ""
	if len(c.Args) == 2 {
		var err error
		if path, err = paas.CleanProcfilePath(c.Args[1]); err != nil {
			return fmt.Errorf("%s", sanitize(err.Error()))
		}
		if path == "Procfile" {
			path = ""
		}
	}
	if _, err := p.Store.UpdateApp(c.App.Name, func(a *paas.App) error { a.ProcfilePath = path; return nil }); err != nil {
		return err
	}
	if path == "" {
		output.Step(c.Out, "Unsetting procfile-path of %s: pushes read Procfile", c.App.Name)
	} else {
		output.Step(c.Out, "Setting procfile-path to %s for %s (used from the next push or ps:rebuild)", path, c.App.Name)
	}
	return nil
}

// procfilePath is the app's procfile-path as ps:report shows it.
func procfilePath(a *paas.App) string {
	if a.ProcfilePath == "" {
		return "Procfile"
	}
	return a.ProcfilePath
}

func (p *Platform) psInspect(ctx context.Context, c *Call) error {
	if len(c.Args) > 0 {
		return errors.New("ps:inspect takes only the app name")
	}
	if c.App.Current == 0 {
		return fmt.Errorf("App %s has not been deployed", c.App.Name)
	}
	docs, err := p.Runtime.Inspect(ctx, c.App.Name)
	if err != nil {
		return err
	}
	out, err := maskedInspect(docs, c.App.Config)
	if err != nil {
		return err
	}
	_, err = c.Out.Write(out)
	return err
}

// unmaskedEnv are the environment variables ps:inspect shows the value of,
// when the app's config does not set them: paas's and the images' own.
var unmaskedEnv = []string{"PATH=", "PORT=", "HOME=", "HOSTNAME=", "CNB_"}

// maskedInspect prints inspect documents as one JSON array, keys sorted,
// indented, with the value of every environment variable (every "Env"
// list of "KEY=VALUE" strings, a container's and a task spec's alike)
// replaced by XXXXXX, except unmaskedEnv's that config does not set (PORT
// is always shown: paas sets it): the output can be pasted anywhere
// without leaking the app's config, as Dokku's does.
func maskedInspect(docs []json.RawMessage, config map[string]string) ([]byte, error) {
	all := make([]any, 0, len(docs))
	for _, raw := range docs {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("read inspect output: %w", err)
		}
		all = append(all, maskEnv(v, "", config))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(all); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func maskEnv(v any, key string, config map[string]string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = maskEnv(e, k, config)
		}
	case []any:
		for i, e := range t {
			s, ok := e.(string)
			if !ok || !strings.EqualFold(key, "env") {
				t[i] = maskEnv(e, "", config)
				continue
			}
			t[i] = maskEntry(s, config)
		}
	}
	return v
}

func maskEntry(s string, config map[string]string) string {
	k, _, ok := strings.Cut(s, "=")
	if !ok {
		return "XXXXXX"
	}
	if _, set := config[k]; set && k != "PORT" {
		return k + "=XXXXXX"
	}
	for _, prefix := range unmaskedEnv {
		if strings.HasPrefix(s, prefix) {
			return s
		}
	}
	return k + "=XXXXXX"
}

func (p *Platform) psRetire(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return errors.New("ps:retire takes at most one app")
	}
	var apps []*paas.App
	if len(c.Args) == 1 {
		app, err := p.usableApp(c.ID, c.Args[0])
		if err != nil {
			return err
		}
		apps = append(apps, app)
	} else {
		var err error
		if apps, err = p.visibleApps(c.ID); err != nil {
			return err
		}
	}
	output.Step(c.Out, "Retiring old containers")
	var errs []error
	for _, a := range apps {
		n, err := p.Releases.Retire(ctx, a.Name, c.Out)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("retire %s: %w", a.Name, err))
		case n == 0:
			output.Detail(c.Out, "%s: nothing to retire", a.Name)
		default:
			output.Detail(c.Out, "%s: %d leftover service(s) removed", a.Name, n)
		}
	}
	return errors.Join(errs...)
}

// usableApp loads the app name if id may use it; one it may not use is
// reported as missing, as the dispatcher does.
func (p *Platform) usableApp(id paas.Identity, name string) (*paas.App, error) {
	if err := paas.ValidateAppName(name); err != nil {
		return nil, fmt.Errorf("%s", sanitize(err.Error()))
	}
	app, err := p.Store.App(name)
	if errors.Is(err, paas.ErrAppNotFound) || err == nil && !auth.CanUseApp(id, app) {
		return nil, notFound(name)
	}
	return app, err
}
