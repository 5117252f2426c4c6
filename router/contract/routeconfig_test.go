package contract

import (
	"strings"
	"testing"
)

func TestConfigName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct{ inst, role, app string }{
		{"paas", RoleAppConfig, "web"},
		{strings.Repeat("n", 20), RoleAppConfig, long},
		{strings.Repeat("n", 20), RoleGlobalConfig, ""},
	} {
		name := ConfigName(tc.inst, tc.role, tc.app, []byte("{}"))
		if len(name) > 64 || !strings.HasPrefix(name, tc.inst+"-"+tc.role+"-") {
			t.Errorf("ConfigName(%q, %q, %q) = %q (%d characters)", tc.inst, tc.role, tc.app, name, len(name))
		}
	}
	if ConfigName("p", RoleAppConfig, "a", []byte("x")) == ConfigName("p", RoleAppConfig, "b", []byte("x")) {
		t.Error("two apps with the same document share a name")
	}
	if got := ConfigName("paas", RoleAppConfig, "web", []byte("{}")); !strings.HasPrefix(got, "paas-route-web-") {
		t.Errorf("short names keep the app: %q", got)
	}
}
