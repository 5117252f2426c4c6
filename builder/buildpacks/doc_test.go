package buildpacks

import (
	"slices"
	"testing"
)

func TestShellProcess(t *testing.T) {
	tests := []struct {
		name, cmd string
		want      []string
	}{
		{"simple", "./server --port $PORT", []string{"/bin/sh", "-c", `exec ./server --port $PORT "$@"`, "sh"}},
		{"pipeline", "a | b", []string{"/bin/sh", "-c", `a | b`, "sh"}},
		{"sequence", "migrate; serve", []string{"/bin/sh", "-c", `migrate; serve`, "sh"}},
		{"loop", "while true; do echo tick; sleep 1; done", []string{"/bin/sh", "-c", `while true; do echo tick; sleep 1; done`, "sh"}},
		{"background", "serve &", []string{"/bin/sh", "-c", "serve &", "sh"}},
		{"comment", "serve # the server", []string{"/bin/sh", "-c", "exec serve # the server", "sh"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ShellProcess("web", tt.cmd)
			if !slices.Equal(p.Command, tt.want) || !p.Default {
				t.Errorf("got %+v, want command %q and default", p, tt.want)
			}
		})
	}
}

func TestParseProcfile(t *testing.T) {
	procs, err := ParseProcfile([]byte("# c\nweb: busybox httpd -f -p $PORT\n\nworker: ./w\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []ProcfileProcess{{"web", "busybox httpd -f -p $PORT"}, {"worker", "./w"}}
	if !slices.Equal(procs, want) {
		t.Fatalf("got %q, want %q", procs, want)
	}
	if _, err := ParseProcfile([]byte("web\n")); err == nil {
		t.Fatal("a line without a colon was accepted")
	}
}
