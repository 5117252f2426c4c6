package scheduler

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"paas/internal/paas"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestObjectName(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name  string
		parts []string
		want  string // "" when only checked for validity
	}{
		{"plain", []string{"paas", "hello", "web"}, "paas-hello-web"},
		{"underscore kept", []string{"paas", "hello", "my_worker"}, "paas-hello-my_worker"},
		{"invalid characters", []string{"paas", "hello", "wörker"}, ""},
		{"too long", []string{"paas", long, "web"}, ""},
		{"too long, other process", []string{"paas", long, "worker"}, ""},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := objectName(tt.parts...)
			if tt.want != "" && got != tt.want {
				t.Errorf("objectName = %q, want %q", got, tt.want)
			}
			if len(got) > maxNameLen {
				t.Errorf("%q is %d characters long", got, len(got))
			}
			for i := range len(got) {
				c := got[i]
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
					t.Errorf("%q holds %q", got, c)
				}
			}
			if got2 := objectName(tt.parts...); got2 != got {
				t.Errorf("not deterministic: %q then %q", got, got2)
			}
			if seen[got] {
				t.Errorf("%q given twice", got)
			}
			seen[got] = true
		})
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		cmd     string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"   ", nil, false},
		{"bin/web --port 5000", []string{"bin/web", "--port", "5000"}, false},
		{"  a\t b\n c ", []string{"a", "b", "c"}, false},
		{`echo 'single $HOME "x"'`, []string{"echo", `single $HOME "x"`}, false},
		{`echo "double \"q\" \\ \$x \n"`, []string{"echo", `double "q" \ $x \n`}, false},
		{`a\ b c`, []string{"a b", "c"}, false},
		{`x'y'"z"`, []string{"xyz"}, false},
		{`empty '' ""`, []string{"empty", "", ""}, false},
		{`$PORT; rm -rf / && echo`, []string{"$PORT;", "rm", "-rf", "/", "&&", "echo"}, false},
		{`open 'quote`, nil, true},
		{`open "quote`, nil, true},
		{`trailing \`, nil, true},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.cmd)
		if (err != nil) != tt.wantErr {
			t.Errorf("SplitCommand(%q) error = %v, want error %v", tt.cmd, err, tt.wantErr)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestEscapeTemplates(t *testing.T) {
	got := escapeTemplates([]string{"A=plain", "B={{.Task.Slot}}", "C=a{{b}}{{", "D=}}"})
	want := []string{"A=plain", `B={{"{{"}}.Task.Slot}}`, `C=a{{"{{"}}b}}{{"{{"}}`, "D=}}"}
	if !slices.Equal(got, want) {
		t.Errorf("escapeTemplates = %q, want %q", got, want)
	}
}

// TestAppSpec compares the service spec of a release with a golden file;
// go test -run TestAppSpec -update rewrites it.
func TestAppSpec(t *testing.T) {
	s := New(nil, Options{Name: "paas"})
	rel := &paas.Release{
		App:     "hello",
		Version: 7,
		Image:   paas.Image{Repository: "127.0.0.1:5001/paas/hello", Digest: "sha256:" + strings.Repeat("ab", 32)},
		Config:  map[string]string{"GREETING": "hi {{there}}", "PORT": "8080", "A": "1"},
		Processes: []paas.ProcessType{
			{Name: "web"},
			{Name: "worker", Command: `bin/worker --queue "high prio"`},
		},
		Scale:     map[string]int{"web": 3},
		CreatedAt: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
	}
	procs, err := processes(rel)
	if err != nil {
		t.Fatal(err)
	}
	var specs []any
	for _, p := range procs {
		spec, err := s.appSpec(rel, p, "v7-abc123")
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	got, err := json.MarshalIndent(specs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "appspec.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("spec differs from %s (run with -update if intended):\n%s", golden, got)
	}
}

func TestSpecHashFollowsTaskTemplate(t *testing.T) {
	s := New(nil, Options{Name: "paas"})
	rel := &paas.Release{App: "hello", Version: 1, Image: paas.Image{Repository: "r/hello", Digest: "sha256:1"}}
	web := paas.ProcessType{Name: "web"}
	base, _ := s.appSpec(rel, web, "v1-aaaaaa")

	rel.Scale = map[string]int{"web": 4}
	scaled, _ := s.appSpec(rel, web, "v1-bbbbbb")
	if specHash(&scaled) != specHash(&base) {
		t.Error("scale or the deployment changed the task hash: an in-place scale would look like a new release")
	}
	rel.Config = map[string]string{"K": "v"}
	changed, _ := s.appSpec(rel, web, "v1-aaaaaa")
	if specHash(&changed) == specHash(&base) {
		t.Error("a config change kept the task hash")
	}
}

func TestParseLogLine(t *testing.T) {
	raw := "2026-11-22T10:00:00.123456789Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello world  \r"
	l, task, ok := parseLogLine(raw)
	if !ok || task != "t1" || l.text != "hello world  " {
		t.Fatalf("parseLogLine = %+v %q %v", l, task, ok)
	}
	l.task = "web.1"
	if got, want := l.String(), "2026-11-22T10:00:00.123456789Z app[web.1]: hello world  \n"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := l.format(true), "hello world  \n"; got != want {
		t.Errorf("format(quiet) = %q, want %q", got, want)
	}
	if _, _, ok := parseLogLine("garbage"); ok {
		t.Error("garbage parsed")
	}
}

func TestReadFrames(t *testing.T) {
	var buf bytes.Buffer
	frame := func(stream byte, s string) {
		hdr := [8]byte{stream}
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
		buf.Write(hdr[:])
		buf.WriteString(s)
	}
	frame(1, "out line\n")
	frame(2, "err line\n")
	frame(3, "system error\n")
	var got []string
	err := readFrames(&buf, func(stream byte, p []byte) error {
		got = append(got, string(rune('0'+stream))+":"+string(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1:out line\n", "2:err line\n", "3:system error\n"}
	if !slices.Equal(got, want) {
		t.Errorf("frames %q, want %q", got, want)
	}
}

// TestAppSpecNetworks: an app's tasks join the release's networks, its own
// first; a release made before apps had networks of their own joins the
// installation's. Only app networks and the installation's count as where
// the router reaches a task.
func TestAppSpecNetworks(t *testing.T) {
	s := New(nil, Options{Name: "paas"})
	rel := &paas.Release{App: "hello", Version: 1, Image: paas.Image{Repository: "r/hello", Digest: "sha256:" + strings.Repeat("ab", 32)}}
	targets := func() []string {
		spec, err := s.appSpec(rel, paas.ProcessType{Name: "web"}, "v1-abc")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range spec.TaskTemplate.Networks {
			names = append(names, n.Target)
		}
		return names
	}
	if got := targets(); !slices.Equal(got, []string{"paas-network"}) {
		t.Errorf("old release: networks %q, want the installation's", got)
	}
	rel.Networks = []string{"paas-app-1a2b3c4d", "team-x", "paas-pg-db-net"}
	if got := targets(); !slices.Equal(got, rel.Networks) {
		t.Errorf("networks %q, want %q", got, rel.Networks)
	}
	net := func(name, role, inst string) swarm.Network {
		return swarm.Network{Spec: swarm.NetworkSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{paas.LabelInstallation: inst, paas.LabelNetworkRole: role}}}}
	}
	for _, tc := range []struct {
		n    swarm.Network
		want bool
	}{
		{net("paas-app-1a2b3c4d", paas.NetworkRoleApp, "paas"), true},
		{net("paas-network", "", ""), true},
		{net("team-x", paas.NetworkRoleUser, "paas"), false},
		{net("paas-pg-db-net", paas.NetworkRoleService, "paas"), false},
		{net("other-app-1", paas.NetworkRoleApp, "other"), false},
	} {
		if got := s.routedOn(tc.n); got != tc.want {
			t.Errorf("routedOn(%s) = %v, want %v", tc.n.Spec.Name, got, tc.want)
		}
	}
}
