package commands

import (
	"context"
	"fmt"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
)

var globalFlag = map[string]bool{"--global": false}

func (b *Builds) builderCommands() []*Command {
	return []*Command{
		{Name: "builder:set", Args: "[--global|APP] selected|build-env [VALUE]",
			Help:  "Choose the builder (selected dockerfile|pack; empty: detect) or pass config vars to builds (build-env true|false); no VALUE unsets",
			Flags: globalFlag, Run: b.builderSet},
		{Name: "builder:report", Args: "APP", Help: "Show an app's build settings", App: true, Flags: formatFlag, Run: b.builderReport},
		{Name: "buildpacks:set-property", Args: "[--global|APP] stack [IMAGE]",
			Help:  "Use IMAGE as the CNB builder (e.g. heroku/builder:24); no IMAGE returns to the default",
			Flags: globalFlag, Run: b.buildpacksSetProperty},
	}
}

// setBuildSetting changes one setting of an app, or the global ones.
func (b *Builds) setBuildSetting(c *Call, app *paas.App, fn func(*paas.BuildSettings) error) error {
	if app == nil {
		return b.Store.UpdateGlobalBuildSettings(fn)
	}
	_, err := b.Store.UpdateApp(app.Name, func(a *paas.App) error { return fn(&a.Build) })
	return err
}

func (b *Builds) builderSet(_ context.Context, c *Call) error {
	app, args, err := b.appOrGlobal(c)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("missing property\n Usage: builder:set [--global|APP] selected|build-env [VALUE]")
	}
	prop, value := args[0], strings.Join(args[1:], " ")
	var fn func(*paas.BuildSettings) error
	switch prop {
	case "selected":
		switch value {
		case "", paas.BuilderDockerfile, paas.BuilderPack:
		default:
			return fmt.Errorf("unknown builder %q: use dockerfile or pack (or nothing to detect)", sanitize(value))
		}
		fn = func(s *paas.BuildSettings) error { s.Selected = value; return nil }
	case "build-env":
		switch value {
		case "", "true", "false":
		default:
			return fmt.Errorf("build-env %q: use true or false", sanitize(value))
		}
		fn = func(s *paas.BuildSettings) error { s.BuildEnv = value; return nil }
	default:
		return fmt.Errorf("unknown property %q: use selected or build-env", sanitize(prop))
	}
	if err := b.setBuildSetting(c, app, fn); err != nil {
		return err
	}
	output.Step(c.Out, "%s %s for %s", describeSet(value), prop, target(app))
	return nil
}

func describeSet(value string) string {
	if value == "" {
		return "Unset"
	}
	return "Set " + sanitize(value) + " as"
}

func target(app *paas.App) string {
	if app == nil {
		return "all apps (--global)"
	}
	return app.Name
}

func (b *Builds) buildpacksSetProperty(_ context.Context, c *Call) error {
	app, args, err := b.appOrGlobal(c)
	if err != nil {
		return err
	}
	if len(args) == 0 || args[0] != "stack" {
		return fmt.Errorf("unknown property: only stack is supported\n Usage: buildpacks:set-property [--global|APP] stack [IMAGE]")
	}
	image := ""
	if len(args) > 1 {
		image = args[1]
	}
	if image != "" && (strings.ContainsAny(image, " \t\n\\") || strings.HasPrefix(image, "-")) {
		return fmt.Errorf("invalid image reference %q", sanitize(image))
	}
	if err := b.setBuildSetting(c, app, func(s *paas.BuildSettings) error { s.Stack = image; return nil }); err != nil {
		return err
	}
	output.Step(c.Out, "%s stack for %s", describeSet(image), target(app))
	return nil
}

func (b *Builds) builderReport(_ context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	global, err := b.Store.GlobalBuildSettings()
	if err != nil {
		return err
	}
	own := c.App.Build
	eff := own.Merge(global)
	stack := eff.Stack
	if stack == "" {
		stack = "default (air-gapped paas/cnb-builder)"
	}
	selected := eff.Selected
	if selected == "" {
		selected = "detect (Dockerfile, else pack)"
	}
	return report(c, asJSON, c.App.Name+" builder information", []kv{
		{"Builder selected", own.Selected},
		{"Builder global selected", global.Selected},
		{"Builder computed selected", selected},
		{"Builder build env", eff.BuildEnv},
		{"Buildpacks stack", own.Stack},
		{"Buildpacks global stack", global.Stack},
		{"Buildpacks computed stack", stack},
	})
}
