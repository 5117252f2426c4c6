package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"paas/internal/output"
	"paas/internal/paas"
)

// AppSettingsStore changes apps' deploy locks and the installation's app
// settings.
type AppSettingsStore interface {
	UpdateApp(name string, fn func(*paas.App) error) (*paas.App, error)
	AppsSettings() (paas.AppsSettings, error)
	UpdateAppsSettings(fn func(*paas.AppsSettings) error) error
}

// AppSettingsCommands are apps:lock, apps:unlock, apps:locked (a locked app
// refuses deploys) and apps:set --global.
func AppSettingsCommands(st AppSettingsStore) []*Command {
	setLock := func(locked bool, msg string) func(context.Context, *Call) error {
		return func(_ context.Context, c *Call) error {
			if _, err := st.UpdateApp(c.App.Name, func(a *paas.App) error { a.Locked = locked; return nil }); err != nil {
				return err
			}
			output.Step(c.Out, "%s", msg)
			return nil
		}
	}
	return []*Command{
		{Name: "apps:lock", Args: "APP", Help: "Lock an app against deploys (pushes, git:from-image, ps:rebuild)", App: true, Run: setLock(true, "Deploy lock created")},
		{Name: "apps:unlock", Args: "APP", Help: "Let an app be deployed again", App: true, Run: setLock(false, "Deploy lock removed")},
		{Name: "apps:locked", Args: "APP", Help: "Exit 0 when the app is locked against deploys, 1 when it is not", App: true, Run: func(_ context.Context, c *Call) error {
			if !c.App.Locked {
				return &exitError{code: ExitError, msg: "Deploy lock does not exist"}
			}
			fmt.Fprintln(c.Out, "Deploy lock exists")
			return nil
		}},
		{Name: "apps:set", Args: "--global disable-autocreation [true|false]", Help: "Change an installation-wide app setting (administrators): disable-autocreation refuses pushes to missing apps",
			Flags: map[string]bool{"--global": false}, MinArgs: 1, Run: func(_ context.Context, c *Call) error {
				if !c.Has("--global") {
					return errors.New("only --global settings exist: apps:set --global disable-autocreation [true|false]")
				}
				if !c.ID.Admin {
					return errors.New("apps:set --global is for administrators only")
				}
				if c.Args[0] != "disable-autocreation" || len(c.Args) > 2 {
					return fmt.Errorf("unknown setting %q: use disable-autocreation", sanitize(c.Args[0]))
				}
				value := false // no value: back to the default
				if len(c.Args) == 2 {
					v, err := strconv.ParseBool(c.Args[1])
					if err != nil {
						return fmt.Errorf("disable-autocreation takes true or false, not %q", sanitize(c.Args[1]))
					}
					value = v
				}
				if err := st.UpdateAppsSettings(func(s *paas.AppsSettings) error { s.DisableAutocreation = value; return nil }); err != nil {
					return err
				}
				output.Step(c.Out, "Setting disable-autocreation to %v", value)
				return nil
			}},
	}
}
