package cron

import (
	"context"
	"errors"
	"fmt"
	"os"

	"paas/plugins"
)

// The Service is also a Go plugin compiled into paasd, as Dokku's cron is a
// plugin: its triggers keep an app's runs and suspensions with the app.
var _ plugins.Hooker = (*Service)(nil)

// Name is the plugin's name.
func (s *Service) Name() string { return "cron" }

// Description says what the plugin does.
func (s *Service) Description() string {
	return "app.json cron tasks: their runs and suspensions follow apps:rename and go with apps:destroy"
}

// Hooks moves an app's state on post-app-rename and removes it on
// post-delete.
func (s *Service) Hooks() map[string]plugins.HookFunc {
	return map[string]plugins.HookFunc{
		plugins.TriggerPostAppRename: func(_ context.Context, ev plugins.Event) error {
			if len(ev.Args) != 2 {
				return fmt.Errorf("post-app-rename: want OLD NEW, got %q", ev.Args)
			}
			return s.renameApp(ev.Args[0], ev.Args[1])
		},
		plugins.TriggerPostDelete: func(_ context.Context, ev plugins.Event) error {
			if len(ev.Args) != 1 {
				return fmt.Errorf("post-delete: want APP, got %q", ev.Args)
			}
			return s.forgetApp(ev.Args[0])
		},
	}
}

// renameApp moves the state of app from to app to (replacing any left by a
// destroyed app of that name).
func (s *Service) renameApp(from, to string) error {
	fileMu.Lock()
	defer fileMu.Unlock()
	src, err := s.path(from)
	if err != nil {
		return err
	}
	dst, err := s.path(to)
	if err != nil {
		return err
	}
	if err := os.Rename(src, dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("move the cron state of %s to %s: %w", from, to, err)
	}
	return nil
}

// forgetApp removes the state of a destroyed app.
func (s *Service) forgetApp(app string) error {
	fileMu.Lock()
	defer fileMu.Unlock()
	p, err := s.path(app)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the cron state of %s: %w", app, err)
	}
	return nil
}
