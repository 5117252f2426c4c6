// Package contract is what the control plane and the router agree on: the
// route configuration documents paasd writes to Swarm config objects and the
// router reads, and the router's control endpoint (AdminHost) with its
// client and answer types. The service labels the router routes by are
// paas.Label*. It imports nothing of the router, so that paasd and the
// scheduler use the contract without linking the data plane.
package contract

import (
	"crypto/sha256"
	"encoding/hex"

	"paas/internal/paas"
)

// ACMEChallengePath is where ACME HTTP-01 validation requests arrive.
const ACMEChallengePath = "/.well-known/acme-challenge/"

// Route configuration travels from the control plane to the router in Swarm
// config objects, labelled with the installation and one of these roles. They
// live in Swarm's replicated, encrypted store, so every router on every
// manager reads them, also while paasd is stopped.
const (
	RoleAppConfig    = "route"        // one per app: AppConfig
	RoleGlobalConfig = "route-global" // one per installation: GlobalConfig
)

// AppConfig is what the control plane adds to an app's route: the JSON
// document in its Swarm config object.
type AppConfig struct {
	App string `json:"app"`
	// Domains are exact names ("app.example.com") and one-label wildcards
	// ("*.preview.example.com"), in canonical form.
	Domains []string `json:"domains,omitempty"`
	// Port, when set, is the container port requests go to, instead of the
	// port the web service is labelled with (ports:set).
	Port int `json:"port,omitempty"`
	// NoVhost (domains:disable) serves the app at no host name at all, its
	// APP.DOMAIN names included: it is reachable on the app network only.
	NoVhost bool `json:"no_vhost,omitempty"`
	// Certs are PEM certificate chains with their keys; the first one that
	// covers a name serves it.
	Certs []CertPEM `json:"certs,omitempty"`
	// MaxBodyBytes limits a request body; 0 means no limit.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// ReadTimeoutMS bounds the wait for the app's response headers; 0 means
	// no limit beyond the client's own.
	ReadTimeoutMS int64 `json:"read_timeout_ms,omitempty"`
}

// CertPEM is a certificate chain and its private key, PEM encoded.
type CertPEM struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// GlobalConfig is the installation-wide part of the route configuration.
type GlobalConfig struct {
	// Domain, when set, replaces the router's --domain: apps are served at
	// APP.Domain (domains:set-global).
	Domain string `json:"domain,omitempty"`
	// MoreDomains are more global domains (domains:add-global): every app
	// is also served at APP.D for each of them.
	MoreDomains []string `json:"more_domains,omitempty"`
	// Challenges maps ACME HTTP-01 tokens to their key authorizations; the
	// router answers /.well-known/acme-challenge/TOKEN on every host name.
	Challenges map[string]string `json:"challenges,omitempty"`
	// Control, when set, is where the router serves the control plane's
	// own HTTP server (the API and the dashboard): its host names
	// (paas.DOMAIN for each global domain) and their certificates.
	Control *ControlConfig `json:"control,omitempty"`
}

// ControlConfig is the route to the control plane (paasd's HTTP server).
// The router reaches it through ControlSocket in its sockets directory,
// where paasd listens on the router's node; on a node without paasd the
// names answer 502.
type ControlConfig struct {
	Hosts []string  `json:"hosts"`
	Certs []CertPEM `json:"certs,omitempty"`
}

// ControlSocket is the unix socket, in the router's sockets directory,
// paasd's HTTP server listens on.
const ControlSocket = "control.sock"

// ConfigName returns the Swarm config object name for a document: the
// installation, the role, the app and a digest of the data, so that a new
// document is a new object and an old one can be removed once it is replaced.
// Swarm takes names of at most 64 characters: a long app name is left out
// (the labels carry it; the digest covers it).
func ConfigName(installation, role, app string, data []byte) string {
	h := sha256.New()
	h.Write([]byte(app + "\x00"))
	h.Write(data)
	digest := hex.EncodeToString(h.Sum(nil)[:6])
	name := installation + "-" + role
	if app != "" && len(name)+len(app)+len(digest)+2 <= maxConfigName {
		name += "-" + app
	}
	return name + "-" + digest
}

// maxConfigName is the longest name Swarm accepts for a config object.
const maxConfigName = 64

// ConfigLabels are the labels of a route config object.
func ConfigLabels(installation, role, app string) map[string]string {
	l := map[string]string{paas.LabelInstallation: installation, paas.LabelRole: role}
	if app != "" {
		l[paas.LabelApp] = app
	}
	return l
}
