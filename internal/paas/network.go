package paas

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Labels of networks.
const (
	// LabelNetworkRole is what a network of the installation is for:
	// NetworkRoleApp (a network the router has, lent to one app at a
	// time), NetworkRoleUser (network:create) or NetworkRoleService (a
	// database's).
	LabelNetworkRole = "paas.network.role"
	// LabelNetworkOwner is who made a network with network:create.
	LabelNetworkOwner = "paas.network.owner"
)

// Values of LabelNetworkRole.
const (
	NetworkRoleApp     = "app"
	NetworkRoleUser    = "user"
	NetworkRoleService = "service"
)

// NetworkSettings are an app's networks: its own (given at its first
// rollout), the networks an owner attached it to (network:set, Dokku's
// keys), and those of the services linked to it (postgres:link).
type NetworkSettings struct {
	Own              string   `json:"own,omitempty"`
	AttachPostCreate []string `json:"attach_post_create,omitempty"`
	AttachPostDeploy []string `json:"attach_post_deploy,omitempty"`
	InitialNetwork   string   `json:"initial_network,omitempty"`
	Linked           []string `json:"linked,omitempty"`
}

// Clone returns a copy that shares no slice with n.
func (n NetworkSettings) Clone() NetworkSettings {
	n.AttachPostCreate = slices.Clone(n.AttachPostCreate)
	n.AttachPostDeploy = slices.Clone(n.AttachPostDeploy)
	n.Linked = slices.Clone(n.Linked)
	return n
}

// All returns every network the app's tasks join, its own first, each once.
// It is empty while the app has no network of its own.
func (n NetworkSettings) All() []string {
	if n.Own == "" {
		return nil
	}
	all := []string{n.Own}
	add := func(names ...string) {
		for _, name := range names {
			if name != "" && !slices.Contains(all, name) {
				all = append(all, name)
			}
		}
	}
	add(n.InitialNetwork)
	add(n.AttachPostCreate...)
	add(n.AttachPostDeploy...)
	add(n.Linked...)
	return all
}

// ErrInvalidNetworkName is a network name ValidateNetworkName refuses.
var ErrInvalidNetworkName = errors.New("invalid network name")

// networkNameRe is what Docker takes as a network name, kept to the
// characters that need no quoting anywhere.
var networkNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// reservedNetworks are Docker's own networks (Dokku refuses them too).
var reservedNetworks = map[string]bool{"none": true, "bridge": true, "host": true, "ingress": true, "docker_gwbridge": true}

// ValidateNetworkName checks a network name given to network:create and
// network:set.
func ValidateNetworkName(name string) error {
	if len(name) == 0 || len(name) > 63 || !networkNameRe.MatchString(name) {
		return fmt.Errorf("%w %q: use letters, digits, dashes, dots and underscores, starting with a letter or digit, at most 63 characters", ErrInvalidNetworkName, name)
	}
	if reservedNetworks[name] {
		return fmt.Errorf("%w %q: it is one of Docker's own networks", ErrInvalidNetworkName, name)
	}
	return nil
}
