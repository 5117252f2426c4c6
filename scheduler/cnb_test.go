package scheduler

import (
	"slices"
	"testing"

	"paas/internal/paas"
)

// A buildpacks image runs each process type through the CNB launcher; any
// other image runs its Procfile command as arguments to its entrypoint.
func TestAppSpecCNBProcess(t *testing.T) {
	s := New(nil, Options{Name: "paas"})
	tests := []struct {
		name        string
		cnb         bool
		proc        paas.ProcessType
		wantCommand []string
		wantArgs    []string
	}{
		{"cnb web", true, paas.ProcessType{Name: "web"}, []string{"/cnb/process/web"}, nil},
		{"cnb worker ignores the Procfile line", true, paas.ProcessType{Name: "worker", Command: "sleep 1"}, []string{"/cnb/process/worker"}, nil},
		{"dockerfile worker", false, paas.ProcessType{Name: "worker", Command: "bin/w -q"}, nil, []string{"bin/w", "-q"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel := &paas.Release{App: "a", Version: 1, Image: paas.Image{Repository: "r/a", Digest: "sha256:1", CNB: tt.cnb}}
			spec, err := s.appSpec(rel, tt.proc, "v1-x")
			if err != nil {
				t.Fatal(err)
			}
			cs := spec.TaskTemplate.ContainerSpec
			if !slices.Equal(cs.Command, tt.wantCommand) || !slices.Equal(cs.Args, tt.wantArgs) {
				t.Fatalf("command %q args %q; want %q %q", cs.Command, cs.Args, tt.wantCommand, tt.wantArgs)
			}
		})
	}
}

// A one-off task of a buildpacks image starts through the CNB launcher:
// a direct command after "--" (no bash needed in the run image), a process
// type as /cnb/process/TYPE. Other images run the Procfile line or the
// command after their entrypoint.
func TestOneOffCommand(t *testing.T) {
	procs := []paas.ProcessType{{Name: "web"}, {Name: "worker", Command: "bin/w -q 'a b'"}}
	tests := []struct {
		name           string
		cnb            bool
		args           []string
		wantEntrypoint []string
		wantCmd        []string
	}{
		{"cnb command", true, []string{"sh", "-c", "exit 3"}, []string{"/cnb/lifecycle/launcher"}, []string{"--", "sh", "-c", "exit 3"}},
		{"cnb command named like a flag of the launcher", true, []string{"--", "x"}, []string{"/cnb/lifecycle/launcher"}, []string{"--", "--", "x"}},
		{"cnb process type", true, []string{"worker"}, []string{"/cnb/process/worker"}, []string{}},
		{"cnb process type with arguments", true, []string{"worker", "--once"}, []string{"/cnb/process/worker"}, []string{"--once"}},
		{"dockerfile command", false, []string{"/server", "-upper"}, nil, []string{"/server", "-upper"}},
		{"dockerfile process type", false, []string{"worker", "x"}, nil, []string{"bin/w", "-q", "a b", "x"}},
		{"dockerfile web without a Procfile line: the image's command", false, []string{"web"}, nil, nil},
		{"dockerfile web with arguments: after the image's command", false, []string{"web", "-v"}, nil, []string{"/server", "-v"}},
		{"a process name is matched whole", false, []string{"work"}, nil, []string{"work"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel := &paas.Release{App: "a", Version: 1, Processes: procs, Image: paas.Image{Repository: "r/a", Digest: "sha256:1", CNB: tt.cnb}}
			ep, cmd, err := oneOffCommand(rel, tt.args, []string{"/server"})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ep, tt.wantEntrypoint) || !slices.Equal(cmd, tt.wantCmd) || (cmd == nil) != (tt.wantCmd == nil) {
				t.Fatalf("entrypoint %q cmd %q; want %q %q", ep, cmd, tt.wantEntrypoint, tt.wantCmd)
			}
		})
	}
	if _, _, err := oneOffCommand(&paas.Release{}, nil, nil); err == nil {
		t.Fatal("no command: want an error")
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "PORT=5000"}, []string{"B=x=y", "C=", "A=3"})
	want := []string{"PORT=5000", "B=x=y", "C=", "A=3"}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeEnv = %q, want %q", got, want)
	}
}

func TestDisplayCommand(t *testing.T) {
	if got, want := displayCommand([]string{"sh", "-c", "echo 'hi' $X", "", "a=b"}), `sh -c 'echo '\''hi'\'' $X' '' a=b`; got != want {
		t.Fatalf("displayCommand = %s, want %s", got, want)
	}
}
