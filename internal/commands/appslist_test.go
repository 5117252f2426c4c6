package commands

import (
	"context"
	"strings"
	"testing"

	"paas/scheduler"
)

// fakeCounts answers Counts from a table and counts the calls.
type fakeCounts struct {
	counts map[string][]scheduler.ProcessCount
	calls  int
}

func (f *fakeCounts) Counts(context.Context) (map[string][]scheduler.ProcessCount, error) {
	f.calls++
	return f.counts, nil
}

// apps:list --detail: the apps the caller may use, with their task counts
// from ONE call to the scheduler, none when no listed app is deployed.
func TestAppsListDetail(t *testing.T) {
	counts := &fakeCounts{counts: map[string][]scheduler.ProcessCount{
		"bravo": {{Process: "web", Running: 1, Desired: 2}, {Process: "worker", Running: 1, Desired: 1}},
	}}
	e := newEnv(t, func(p *Platform) { p.Counts = counts })
	tests := []struct {
		name      string
		args      []string
		asRoot    bool
		want      string
		wantCalls int
	}{
		{name: "json, every app", asRoot: true, args: []string{"apps:list", "--detail", "--format", "json"}, wantCalls: 1,
			want: `[{"name":"alpha","state":"not deployed","release":0,"url":"http://alpha.example.test","processes":[]},` +
				`{"name":"bravo","state":"degraded","release":3,"url":"http://bravo.example.test","processes":[{"process":"web","running":1,"desired":2},{"process":"worker","running":1,"desired":1}]}]`},
		{name: "only alice's, none deployed: no call", args: []string{"apps:list", "--detail", "--format", "json"}, wantCalls: 0,
			want: `[{"name":"alpha","state":"not deployed","release":0,"url":"http://alpha.example.test","processes":[]}]`},
		{name: "a page", asRoot: true, args: []string{"apps:list", "--detail", "--offset", "1", "--limit", "5", "--format", "json"}, wantCalls: 1,
			want: `[{"name":"bravo",`},
		{name: "past the end", asRoot: true, args: []string{"apps:list", "--detail", "--offset", "9", "--format", "json"}, wantCalls: 0, want: `[]`},
		{name: "text", asRoot: true, args: []string{"apps:list", "--detail"}, wantCalls: 1, want: "web 1/2 worker 1/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counts.calls = 0
			id := alice
			if tt.asRoot {
				id = root
			}
			code, out, errOut := e.run(t, id, "", tt.args...)
			if code != 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d\n%s\n%s\nwant %s", code, out, errOut, tt.want)
			}
			if tt.name == "a page" && strings.Contains(out, "alpha") {
				t.Fatalf("the page from offset 1 has alpha:\n%s", out)
			}
			if counts.calls != tt.wantCalls {
				t.Fatalf("%d calls to Counts, want %d", counts.calls, tt.wantCalls)
			}
		})
	}
}

func TestAppsListPageBadInput(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"apps:list", "--detail", "--limit", "-1"},
		{"apps:list", "--detail", "--offset", "x"},
		{"apps:list", "--limit", "5"},
	} {
		if code, out, _ := e.run(t, root, "", args...); code == 0 {
			t.Errorf("%v: exit 0\n%s", args, out)
		}
	}
}
