package store

import (
	"errors"
	"slices"

	"paas/internal/paas"
)

// ErrAccessExists and ErrAccessNotFound report a redundant acl:add or acl:remove.
var (
	ErrAccessExists   = errors.New("already in the access list")
	ErrAccessNotFound = errors.New("not in the access list")
)

// AddAccess adds entry (a user name or @group) to app's access list.
func (s *Store) AddAccess(app, entry string) (*paas.App, error) {
	return s.UpdateApp(app, func(a *paas.App) error {
		if slices.Contains(a.Access, entry) {
			return ErrAccessExists
		}
		a.Access = append(a.Access, entry)
		slices.Sort(a.Access)
		return nil
	})
}

// RemoveAccess removes entry from app's access list.
func (s *Store) RemoveAccess(app, entry string) (*paas.App, error) {
	return s.UpdateApp(app, func(a *paas.App) error {
		i := slices.Index(a.Access, entry)
		if i < 0 {
			return ErrAccessNotFound
		}
		a.Access = slices.Delete(a.Access, i, i+1)
		return nil
	})
}
