package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"paas/internal/paas"
)

func TestAccessList(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateApp(&paas.App{Name: "web", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		do      func() (*paas.App, error)
		wantErr error
		want    []string
	}{
		{"add user", func() (*paas.App, error) { return st.AddAccess("web", "bob") }, nil, []string{"bob"}},
		{"add group", func() (*paas.App, error) { return st.AddAccess("web", "@team") }, nil, []string{"@team", "bob"}},
		{"add twice", func() (*paas.App, error) { return st.AddAccess("web", "bob") }, ErrAccessExists, []string{"@team", "bob"}},
		{"remove missing", func() (*paas.App, error) { return st.RemoveAccess("web", "carol") }, ErrAccessNotFound, []string{"@team", "bob"}},
		{"remove", func() (*paas.App, error) { return st.RemoveAccess("web", "bob") }, nil, []string{"@team"}},
		{"missing app", func() (*paas.App, error) { return st.AddAccess("nope", "bob") }, paas.ErrAppNotFound, []string{"@team"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if _, err := s.do(); !errors.Is(err, s.wantErr) {
				t.Fatalf("err %v, want %v", err, s.wantErr)
			}
			a, err := st.App("web")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Access, s.want) {
				t.Fatalf("access %v, want %v", a.Access, s.want)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if evs, err := st.Events(0, 0, nil); err != nil || len(evs) != 0 {
		t.Fatalf("empty log: %v %v", evs, err)
	}
	for i := range 5 {
		if err := st.AddEvent(&paas.Event{Actor: fmt.Sprint("u", i), App: []string{"a", "b"}[i%2], Action: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(evs []*paas.Event) []int {
		var out []int
		for _, e := range evs {
			if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
				t.Fatalf("event time %v", e.Time)
			}
			out = append(out, e.ID)
		}
		return out
	}
	onlyA := func(e *paas.Event) bool { return e.App == "a" }
	for _, tc := range []struct {
		name         string
		after, limit int
		keep         func(*paas.Event) bool
		want         []int
	}{
		{"all, oldest first", 0, 0, nil, []int{1, 2, 3, 4, 5}},
		{"newest 2", 0, 2, nil, []int{4, 5}},
		{"after 3", 3, 0, nil, []int{4, 5}},
		{"filtered", 0, 0, onlyA, []int{1, 3, 5}},
		{"filtered newest 2", 0, 2, onlyA, []int{3, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := st.Events(tc.after, tc.limit, tc.keep)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(evs); !slices.Equal(got, tc.want) {
				t.Fatalf("ids %v, want %v", got, tc.want)
			}
		})
	}
}
