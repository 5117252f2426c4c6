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
