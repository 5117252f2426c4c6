package paas

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
)

// States of a process type's zero-downtime checks (checks:enable, checks:skip,
// checks:disable).
const (
	CheckEnabled  = "enabled"
	CheckSkipped  = "skipped"
	CheckDisabled = "disabled"
)

// CheckAll is Dokku's name for every process type in checks:report's lists.
const CheckAll = "_all_"

// State returns the check state of process type proc: the one set for it
// alone, else the app-wide one, else enabled.
func (s CheckSettings) State(proc string) string {
	if st, ok := s.Procs[proc]; ok {
		return st
	}
	return s.wide()
}

// wide is the app-wide state.
func (s CheckSettings) wide() string {
	switch {
	case s.Disabled:
		return CheckDisabled
	case s.Skipped:
		return CheckSkipped
	}
	return CheckEnabled
}

// WithState returns s with state set for procs, or app-wide when procs is
// empty (which also drops every per-process state, as Dokku's _all_ does).
// A per-process state equal to the app-wide one is not kept.
func (s CheckSettings) WithState(state string, procs []string) CheckSettings {
	if len(procs) == 0 {
		s.Disabled, s.Skipped, s.Procs = state == CheckDisabled, state == CheckSkipped, nil
		return s
	}
	s.Procs = maps.Clone(s.Procs)
	if s.Procs == nil {
		s.Procs = map[string]string{}
	}
	wide := s.wide()
	for _, p := range procs {
		if state == wide {
			delete(s.Procs, p)
		} else {
			s.Procs[p] = state
		}
	}
	if len(s.Procs) == 0 {
		s.Procs = nil
	}
	return s
}

// List names the process types in state, Dokku-style: "_all_" first when it
// is the app-wide state, then the single ones, comma-separated; "none".
func (s CheckSettings) List(state string) string {
	var out []string
	if s.wide() == state && state != CheckEnabled {
		out = append(out, CheckAll)
	}
	for _, p := range slices.Sorted(maps.Keys(s.Procs)) {
		if s.Procs[p] == state {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// ParseProcessList reads checks:*'s comma-separated process types
// ("web,worker"); "_all_" or "" mean every process type (nil).
func ParseProcessList(s string) ([]string, error) {
	if s == "" || s == CheckAll {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if ValidateAppName(p) != nil {
			return nil, fmt.Errorf("invalid process type %q: use names such as web or worker, comma-separated", p)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// CleanProcfilePath returns path as a procfile-path (ps:set), cleaned, when
// it is a relative path inside the commit.
func CleanProcfilePath(path string) (string, error) {
	if !filepath.IsLocal(path) || strings.ContainsAny(path, "\\\x00") {
		return "", fmt.Errorf("invalid procfile-path %q: use a path relative to the root of the repository, e.g. .paas/Procfile", path)
	}
	return filepath.Clean(path), nil
}
