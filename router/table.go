package router

import (
	"cmp"
	"net"
	"slices"
	"strings"
)

// Table is a snapshot of everything the router serves: one Route per app.
// A Source builds a fresh Table on every poll; the router compares it with the
// one it serves and swaps only when something changed.
type Table struct {
	Routes []Route
	// Global is the installation-wide route configuration; nil when none.
	Global *Global
}

// Route sends the requests for some host names to the backends of one app.
type Route struct {
	App string
	// Hosts are exact host names, without port; matched case-insensitively.
	Hosts []string
	// Backends are the app's running web tasks. None means the app is known
	// but has nothing to serve with (503).
	Backends []Backend
	// Edge is what the app's route configuration adds (wildcard names,
	// certificates, limits); nil when it has none.
	Edge *Edge
}

// Backend is one task that serves an app.
type Backend struct {
	Addr string // host:port, e.g. "10.0.1.5:5000"
}

// Equal reports whether t and o route the same hosts to the same backends,
// ignoring order and host name case.
func (t Table) Equal(o Table) bool {
	return t.normalize().same(o.normalize())
}

// same compares two normalized tables.
func (t Table) same(o Table) bool {
	return globalKey(t.Global) == globalKey(o.Global) && slices.EqualFunc(t.Routes, o.Routes, func(x, y Route) bool {
		return x.App == y.App && slices.Equal(x.Hosts, y.Hosts) && slices.Equal(x.Backends, y.Backends) && edgeKey(x.Edge) == edgeKey(y.Edge)
	})
}

// normalize returns a copy of t with routes sorted by app, host names
// canonical, sorted and unique, and backends sorted and unique. Routes of the
// same app are merged.
func (t Table) normalize() Table {
	byApp := make(map[string]*Route, len(t.Routes))
	for _, r := range t.Routes {
		n := byApp[r.App]
		if n == nil {
			n = &Route{App: r.App}
			byApp[r.App] = n
		}
		if n.Edge == nil {
			n.Edge = r.Edge
		}
		for _, h := range r.Hosts {
			if h = canonicalHost(h); h != "" {
				n.Hosts = append(n.Hosts, h)
			}
		}
		for _, b := range r.Backends {
			if b.Addr != "" {
				n.Backends = append(n.Backends, b)
			}
		}
	}
	out := Table{Routes: make([]Route, 0, len(byApp)), Global: t.Global}
	for _, r := range byApp {
		slices.Sort(r.Hosts)
		r.Hosts = slices.Compact(r.Hosts)
		slices.SortFunc(r.Backends, func(x, y Backend) int { return cmp.Compare(x.Addr, y.Addr) })
		r.Backends = slices.Compact(r.Backends)
		out.Routes = append(out.Routes, *r)
	}
	slices.SortFunc(out.Routes, func(x, y Route) int { return cmp.Compare(x.App, y.App) })
	return out
}

// canonicalHost turns a Host header or a configured host name into the form
// routes are keyed by: lower case, no port, no trailing dot, no IPv6 brackets.
func canonicalHost(h string) string {
	h = strings.TrimSpace(h)
	if strings.IndexByte(h, ':') < 0 {
		// No port and no IPv6 address: skip SplitHostPort, whose error for
		// a host without a port costs an allocation on every request.
	} else if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h) // no allocation when already lower case
}
