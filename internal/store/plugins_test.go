package store_test

import (
	"errors"
	"testing"
)

func TestPluginData(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	pg, other := s.Plugin("postgres"), s.Plugin("other")
	if v, err := pg.Get("db1"); err != nil || v != nil {
		t.Fatalf("Get of a missing key = %q, %v", v, err)
	}
	set := func(v string) func([]byte) ([]byte, error) {
		return func([]byte) ([]byte, error) { return []byte(v), nil }
	}
	if err := pg.Update("db1", set("one")); err != nil {
		t.Fatal(err)
	}
	if err := pg.Update("db2", set("two")); err != nil {
		t.Fatal(err)
	}
	if err := other.Update("db1", set("not postgres")); err != nil {
		t.Fatal(err)
	}
	// an error from fn changes nothing
	boom := errors.New("boom")
	if err := pg.Update("db1", func(old []byte) ([]byte, error) {
		if string(old) != "one" {
			t.Errorf("old = %q", old)
		}
		return []byte("changed"), boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	// nil deletes
	if err := pg.Update("db2", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	// survives a reopen
	s.Close()
	s = openStore(t, dir)
	all, err := s.Plugin("postgres").List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || string(all["db1"]) != "one" {
		t.Fatalf("List = %q", all)
	}
	if v, _ := s.Plugin("other").Get("db1"); string(v) != "not postgres" {
		t.Fatalf("other plugin's db1 = %q", v)
	}
	if all, err := s.Plugin("nothing-yet").List(); err != nil || len(all) != 0 {
		t.Fatalf("List of an unused plugin = %q, %v", all, err)
	}
}
