package paas

import (
	"errors"
	"slices"
	"testing"
)

func TestNetworkSettingsAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    NetworkSettings
		want []string
	}{
		{"no network of its own yet", NetworkSettings{AttachPostDeploy: []string{"x"}}, nil},
		{"own only", NetworkSettings{Own: "own"}, []string{"own"}},
		{"own first, each once", NetworkSettings{Own: "own", InitialNetwork: "a", AttachPostCreate: []string{"b", "a"}, AttachPostDeploy: []string{"c", "own"}, Linked: []string{"db", "b"}},
			[]string{"own", "a", "b", "c", "db"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.n.All(); !slices.Equal(got, tc.want) {
				t.Errorf("All() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateNetworkName(t *testing.T) {
	for _, ok := range []string{"team-x", "a", "net_1.b"} {
		if err := ValidateNetworkName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "a/b", "a b", "host", "bridge", "none", "ingress", "x$(id)", string(make([]byte, 64))} {
		if err := ValidateNetworkName(bad); !errors.Is(err, ErrInvalidNetworkName) {
			t.Errorf("%q: got %v, want ErrInvalidNetworkName", bad, err)
		}
	}
}
