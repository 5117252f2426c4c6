package paas

import "strings"

// ImageRegistry is the registry an installation's images go to: the embedded
// one or one elsewhere (--registry), with the login that pushes and pulls
// there. Builders push to it, and every Swarm node pulls from it with the
// same login.
type ImageRegistry struct {
	// Prefix names the installation's repositories: an app's images are
	// Prefix+"/"+APP, e.g. "10.0.0.5:5000/paas" or "ghcr.io/acme/paas".
	Prefix string
	// Username and Password are the login; empty for an anonymous registry.
	Username string
	Password string `json:"-"`
	// CAFile is a PEM file of the CA the registry's certificate chains to,
	// when the system's roots do not cover it ("" otherwise).
	CAFile string
}

// Host is the registry's host[:port], the part of Prefix before its first
// slash.
func (r ImageRegistry) Host() string {
	host, _, _ := strings.Cut(r.Prefix, "/")
	return host
}

// Repository is the repository of app's images.
func (r ImageRegistry) Repository(app string) string {
	return strings.TrimSuffix(r.Prefix, "/") + "/" + app
}
