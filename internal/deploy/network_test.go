package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"paas/internal/paas"
)

// fakePool is a pool of app networks that grows by 2.
type fakePool struct {
	nets  []string
	added int
}

func (f *fakePool) AppNetworks(context.Context) ([]string, error) {
	return append([]string{}, f.nets...), nil
}

func (f *fakePool) AddAppNetworks(context.Context) error {
	f.added++
	for range 2 {
		f.nets = append(f.nets, fmt.Sprintf("net%d", len(f.nets)))
	}
	return nil
}

func TestEnsureOwnNetwork(t *testing.T) {
	st := newFakeStore(&paas.App{Name: "a"}, &paas.App{Name: "b"}, &paas.App{Name: "c"})
	pool := &fakePool{nets: []string{"net0", "net1"}}
	p := &Pipeline{store: st, networks: pool, log: slog.New(slog.DiscardHandler)}
	lend := func(name string) string {
		t.Helper()
		app, err := st.App(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.ensureOwnNetwork(context.Background(), app); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stored, _ := st.App(name)
		if stored.Network.Own != app.Network.Own {
			t.Fatalf("%s: stored %q, lent %q", name, stored.Network.Own, app.Network.Own)
		}
		return app.Network.Own
	}
	if a, b := lend("a"), lend("b"); a != "net0" || b != "net1" {
		t.Fatalf("lent %q and %q, want net0 and net1", a, b)
	}
	if again := lend("a"); again != "net0" || pool.added != 0 {
		t.Fatalf("a again: %q (pool grown %d times), want net0 and no growth", again, pool.added)
	}
	// The pool is all lent: it grows once, c gets a new one.
	if c := lend("c"); c != "net2" || pool.added != 1 {
		t.Fatalf("c: %q (pool grown %d times), want net2 after one growth", c, pool.added)
	}
	// A destroyed app's network is free again.
	st.mu.Lock()
	delete(st.apps, "b")
	st.apps["d"] = &paas.App{Name: "d"}
	st.mu.Unlock()
	if d := lend("d"); d != "net1" || pool.added != 1 {
		t.Fatalf("d: %q (pool grown %d times), want b's net1", d, pool.added)
	}
}
