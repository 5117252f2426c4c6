package auth_test

import (
	"testing"

	"paas/internal/auth"
	"paas/internal/paas"
)

func TestAccessLists(t *testing.T) {
	app := &paas.App{Name: "web", Owner: "alice", Access: []string{"bob", "@team", "@"}}
	tests := []struct {
		name        string
		id          paas.Identity
		use, manage bool
	}{
		{"owner", paas.Identity{Name: "alice"}, true, true},
		{"admin", paas.Identity{Name: "root", Admin: true}, true, true},
		{"listed user", paas.Identity{Name: "bob"}, true, false},
		{"member of a listed group", paas.Identity{Name: "carol", Groups: []string{"other", "team"}}, true, false},
		{"user named like a group", paas.Identity{Name: "@team"}, false, false},
		{"group named like a user", paas.Identity{Name: "dave", Groups: []string{"bob"}}, false, false},
		{"empty group name matches nothing", paas.Identity{Name: "erin", Groups: []string{""}}, false, false},
		{"stranger", paas.Identity{Name: "mallory"}, false, false},
		{"no name", paas.Identity{}, false, false},
		{"case matters", paas.Identity{Name: "Alice", Groups: []string{"Team"}}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.CanUseApp(tt.id, app); got != tt.use {
				t.Errorf("CanUseApp = %v, want %v", got, tt.use)
			}
			if got := auth.CanManageAccess(tt.id, app); got != tt.manage {
				t.Errorf("CanManageAccess = %v, want %v", got, tt.manage)
			}
		})
	}
}
