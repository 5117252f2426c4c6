package store

import "paas/internal/paas"

var keyGlobalResources = []byte("resources")

// GlobalResources returns the installation's resource settings, the
// default of every app without its own (`resource:limit --global`).
func (s *Store) GlobalResources() (paas.ResourceSettings, error) {
	return setting[paas.ResourceSettings](s, keyGlobalResources)
}

// UpdateGlobalResources applies fn to the installation's resource settings.
func (s *Store) UpdateGlobalResources(fn func(*paas.ResourceSettings) error) error {
	return updateSetting(s, keyGlobalResources, fn)
}
