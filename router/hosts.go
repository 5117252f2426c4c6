package router

import (
	"log/slog"
	"strings"
)

// lookup finds the route of a canonical host name: an exact name (custom
// domains and the default APP.DOMAIN) first, then a one-label wildcard
// ("*.preview.example.com" serves "pr-1.preview.example.com", not
// "a.b.preview.example.com", as a wildcard certificate would). Two map reads
// at most, whatever the number of apps.
func (t *routeTable) lookup(host string) *route { return lookupHost(t, host) }

// lookupBytes is lookup for a Host header as the front reads it; when it is
// already canonical (lower case, no port), as it nearly always is, it
// costs no allocation.
func (t *routeTable) lookupBytes(host []byte) *route {
	for _, ch := range host {
		if 'A' <= ch && ch <= 'Z' || ch == ':' || ch == ' ' || ch == '\t' || ch == '[' {
			return t.lookup(canonicalHost(string(host)))
		}
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		return t.lookup(canonicalHost(string(host)))
	}
	return lookupHost(t, host)
}

// lookupHost is lookup for a canonical name as a string or as bytes (a map
// index with string(bytes) does not allocate).
func lookupHost[S string | []byte](t *routeTable, host S) *route {
	if rt := t.hosts[string(host)]; rt != nil {
		return rt
	}
	if len(t.wild) == 0 {
		return nil
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if i == 0 {
				return nil // no label for the wildcard
			}
			return t.wild[string(host[i+1:])]
		}
	}
	return nil
}

// AppFor returns the app a Host header is routed to, as a request would be.
func (r *Router) AppFor(host string) (string, bool) {
	if rt := r.table.Load().lookup(canonicalHost(host)); rt != nil {
		return rt.App, true
	}
	return "", false
}

// addWildcards registers the wildcard names of cr's Edge in wild, keyed by the
// parent domain; a name another app already has stays with it.
func addWildcards(log *slog.Logger, wild map[string]*route, cr *route) {
	if cr.edge == nil {
		return
	}
	for _, w := range cr.edge.Wildcards {
		parent, ok := strings.CutPrefix(w, "*.")
		if !ok || parent == "" {
			continue
		}
		if other, taken := wild[parent]; taken {
			log.Warn("host name claimed by two apps; the first one keeps it", "host", w, "app", other.App, "ignored_app", cr.App)
			continue
		}
		wild[parent] = cr
	}
}
