package store_test

import (
	"reflect"
	"testing"
	"time"

	"paas/internal/paas"
	"paas/internal/store"
)

// AppList and ServedSince keep what they decoded; every kind of write must
// still read at once in the next list, whoever made it.
func TestAppListFollowsEveryWrite(t *testing.T) {
	s := openStore(t, t.TempDir())
	mustCreate(t, s, "beta", "bob")
	mustCreate(t, s, "alpha", "alice")
	want := []paas.AppEntry{{Name: "alpha", Owner: "alice"}, {Name: "beta", Owner: "bob"}}
	check := func(step string) {
		t.Helper()
		got, err := s.AppList()
		if err != nil {
			t.Fatalf("%s: AppList: %v", step, err)
		}
		if err := s.ServedSince(got); err != nil {
			t.Fatalf("%s: ServedSince: %v", step, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: AppList\n got %+v\nwant %+v", step, got, want)
		}
	}
	check("created")
	check("again, from what it kept")

	if _, err := s.UpdateApp("alpha", func(a *paas.App) error {
		a.Access = []string{"carol", "@ops"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want[0].Access = []string{"carol", "@ops"}
	check("access changed")

	// A caller that changes what it got does not change the next list.
	got, _ := s.AppList()
	got[0].Access[0] = "mallory"
	if got[1].DeployedAt = time.Now(); s.ServedSince(got[1:]) != nil || !got[1].DeployedAt.IsZero() {
		t.Fatalf("ServedSince of an app never deployed: %v, want zero", got[1].DeployedAt)
	}
	check("after a caller changed its copy")

	r1 := release("beta", 1, nil)
	if err := s.AddRelease(r1); err != nil {
		t.Fatal(err)
	}
	want[1].Current, want[1].DeployedAt = 1, r1.CreatedAt
	check("deployed")
	r2 := release("beta", 2, nil)
	r2.CreatedAt = r1.CreatedAt.Add(time.Hour)
	if err := s.AddRelease(r2); err != nil {
		t.Fatal(err)
	}
	want[1].Current, want[1].DeployedAt = 2, r2.CreatedAt
	check("deployed again")
	if _, err := s.UpdateApp("beta", func(a *paas.App) error {
		a.Current, a.Stopped = 1, true // as a rollback and ps:stop record it
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want[1].Current, want[1].Stopped, want[1].DeployedAt = 1, true, r1.CreatedAt
	check("rolled back and stopped")

	if _, err := s.RenameApp("alpha", "gamma", func(i paas.Image) paas.Image { return i }); err != nil {
		t.Fatal(err)
	}
	want = []paas.AppEntry{want[1], {Name: "gamma", Owner: "alice", Access: []string{"carol", "@ops"}}}
	check("renamed")
	if err := s.DeleteApp("beta"); err != nil {
		t.Fatal(err)
	}
	want = want[1:]
	check("deleted")

	key := make([]byte, store.KeySize)
	key[0] = 1
	if _, err := s.RotateKey(key); err != nil {
		t.Fatal(err)
	}
	check("key rotated")
}
