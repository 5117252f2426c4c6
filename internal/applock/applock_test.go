package applock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockSerializesOneApp(t *testing.T) {
	var s Set
	unlock, err := s.Lock(context.Background(), "a", func() { t.Error("first holder should not wait") })
	if err != nil {
		t.Fatal(err)
	}
	// another app is not held up
	other, err := s.Lock(context.Background(), "b", func() { t.Error("another app should not wait") })
	if err != nil {
		t.Fatal(err)
	}
	other()

	var waited atomic.Bool
	got := make(chan func())
	go func() {
		u, err := s.Lock(context.Background(), "a", func() { waited.Store(true) })
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	select {
	case <-got:
		t.Fatal("second holder got the lock while the first held it")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	u := <-got
	if !waited.Load() {
		t.Error("waiting was not called for a contended lock")
	}
	u()
}

func TestLockGivesUpWithContext(t *testing.T) {
	var s Set
	unlock, _ := s.Lock(context.Background(), "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "a", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	unlock()
	// the abandoned wait took nothing: the lock is free
	u, err := s.Lock(context.Background(), "a", func() { t.Error("lock should be free") })
	if err != nil {
		t.Fatal(err)
	}
	u()
}
