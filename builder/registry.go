package builder

import (
	"encoding/base64"

	registrytypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"paas/internal/paas"
)

// emptyAuth is the base64 of "{}": no credentials, for an anonymous registry.
var emptyAuth = base64.URLEncoding.EncodeToString([]byte("{}"))

// DockerAuth is the login of reg as the Docker API takes it
// (X-Registry-Auth: pushes, pulls, and Swarm services, whose nodes pull
// with it as `docker service create --with-registry-auth` does).
func DockerAuth(reg paas.ImageRegistry) string {
	if reg.Username == "" {
		return emptyAuth
	}
	auth, err := registrytypes.EncodeAuthConfig(registrytypes.AuthConfig{
		Username: reg.Username, Password: reg.Password, ServerAddress: reg.Host(),
	})
	if err != nil { // a struct of strings always encodes
		return emptyAuth
	}
	return auth
}

// registryKeychain is an authn.Keychain holding reg's login for reg's host
// only: pack hands it to the lifecycle (CNB_REGISTRY_AUTH), and the importer
// and digest lookups use it.
type registryKeychain struct{ reg paas.ImageRegistry }

var _ authn.Keychain = registryKeychain{}

func (k registryKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if k.reg.Username == "" {
		return authn.Anonymous, nil
	}
	own, err := name.NewRegistry(k.reg.Host())
	if err != nil || own.RegistryStr() != r.RegistryStr() {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: k.reg.Username, Password: k.reg.Password}), nil
}

// withRegistry is keychain with reg's login first.
func withRegistry(reg paas.ImageRegistry, keychain authn.Keychain) authn.Keychain {
	if keychain == nil {
		return registryKeychain{reg}
	}
	return authn.NewMultiKeychain(registryKeychain{reg}, keychain)
}
