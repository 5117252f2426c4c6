package paas

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "512m", want: 512 << 20},
		{in: "512M", want: 512 << 20},
		{in: "1g", want: 1 << 30},
		{in: "1.5GB", want: 3 << 29},
		{in: "256", want: 256 << 20}, // Dokku's default unit: megabytes
		{in: "6m", want: 6 << 20},
		{in: "8192k", want: 8 << 20},
		{in: "5m", err: "less than the 6 MB a task needs to start"},
		{in: "1000000b", err: "less than the 6 MB"},
		{in: "0", err: "greater than zero"},
		{in: "0m", err: "greater than zero"},
		{in: "-512m", err: "give an amount such as 512m"},
		{in: "512x", err: `unknown unit "x"`},
		{in: "512 m", err: "give an amount"},
		{in: "m", err: "give an amount"},
		{in: "", err: "give an amount"},
		{in: "1e3m", err: "give an amount"},
		{in: "99999999999t", err: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMemory(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidResource) {
					t.Fatalf("ParseMemory(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  string
	}{
		{in: "1", want: 1e9},
		{in: "0.5", want: 5e8},
		{in: "2.25", want: 2.25e9},
		{in: "0.01", want: 1e7},
		{in: "0.001", err: "at least 0.01"},
		{in: "0", err: "greater than zero"},
		{in: "0.0", err: "greater than zero"},
		{in: "-1", err: "greater than zero, such as"},
		{in: "1.5cpu", err: "such as 1 or 0.5"},
		{in: ".5", err: "such as"},
		{in: "2000", err: "at most 1024 CPUs"},
		{in: "0.0000000001", err: "at most 9 decimals"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCPU(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseCPU(%q) = %d, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseCPU(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatResources(t *testing.T) {
	for in, want := range map[int64]string{512 << 20: "512 MB", 1 << 30: "1 GB", 3 << 29: "1536 MB", 6<<20 + 512: "6.0 MB", 7 << 10: "7 KB"} {
		if got := FormatMemory(in); got != want {
			t.Errorf("FormatMemory(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{1e9: "1", 5e8: "0.5", 1.25e9: "1.25"} {
		if got := FormatCPU(in); got != want {
			t.Errorf("FormatCPU(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestEffectiveResources(t *testing.T) {
	global := ResourceSettings{
		Limits:       map[string]Resources{ResourceDefault: {NanoCPUs: 2e9, MemoryBytes: 1 << 30}, "worker": {MemoryBytes: 2 << 30}},
		Reservations: map[string]Resources{ResourceDefault: {MemoryBytes: 64 << 20}},
	}
	app := ResourceSettings{
		Limits:       map[string]Resources{ResourceDefault: {MemoryBytes: 512 << 20}, "web": {NanoCPUs: 1e9}},
		Reservations: map[string]Resources{"web": {MemoryBytes: 256 << 20}},
	}
	tests := []struct {
		name      string
		app       ResourceSettings
		process   string
		limit     Resources
		reservcpu int64
		reservmem int64
	}{
		{name: "the app's own for the process type, its default for the rest", app: app, process: "web", limit: Resources{NanoCPUs: 1e9, MemoryBytes: 512 << 20}, reservmem: 256 << 20},
		{name: "the app's default before the installation's per process type", app: app, process: "worker", limit: Resources{NanoCPUs: 2e9, MemoryBytes: 512 << 20}, reservmem: 64 << 20},
		{name: "an app without its own gets the installation's", process: "worker", limit: Resources{NanoCPUs: 2e9, MemoryBytes: 2 << 30}, reservmem: 64 << 20},
		{name: "installation default", process: "clock", limit: Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30}, reservmem: 64 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EffectiveResources(tt.app, global, tt.process)
			want := ProcessResources{Limit: tt.limit, Reserve: Resources{NanoCPUs: tt.reservcpu, MemoryBytes: tt.reservmem}}
			if got != want {
				t.Fatalf("EffectiveResources(%s) = %+v, want %+v", tt.process, got, want)
			}
		})
	}
	if got := EffectiveResources(ResourceSettings{}, ResourceSettings{}, "web"); !got.IsZero() {
		t.Fatalf("nothing set: %+v, want no limit", got)
	}
}

func TestCheckResources(t *testing.T) {
	global := ResourceSettings{Limits: map[string]Resources{ResourceDefault: {MemoryBytes: 256 << 20}}}
	over := ResourceSettings{Reservations: map[string]Resources{"web": {MemoryBytes: 512 << 20}}}
	err := CheckResources(over, global)
	if err == nil || !strings.Contains(err.Error(), "process type web would reserve 512 MB of memory, more than its limit of 256 MB") {
		t.Fatalf("reservation over the installation's limit: %v", err)
	}
	cpu := ResourceSettings{Limits: map[string]Resources{ResourceDefault: {NanoCPUs: 5e8}}, Reservations: map[string]Resources{ResourceDefault: {NanoCPUs: 1e9}}}
	if err := CheckResources(cpu, ResourceSettings{}); err == nil || !strings.Contains(err.Error(), "every process type would reserve 1 CPU, more than its limit of 0.5") {
		t.Fatalf("cpu reservation over the limit: %v", err)
	}
	// a limit of a process type the settings do not name, checked through extra
	res := ResourceSettings{Reservations: map[string]Resources{ResourceDefault: {MemoryBytes: 128 << 20}}}
	lim := ResourceSettings{Limits: map[string]Resources{"worker": {MemoryBytes: 64 << 20}}}
	if err := CheckResources(res, lim, "worker"); err == nil {
		t.Fatal("worker reserves 128 MB under a 64 MB limit: want an error")
	}
	ok := ResourceSettings{Limits: map[string]Resources{ResourceDefault: {MemoryBytes: 512 << 20}}, Reservations: map[string]Resources{ResourceDefault: {MemoryBytes: 512 << 20}}}
	if err := CheckResources(ok, global); err != nil {
		t.Fatalf("reservation equal to the limit: %v", err)
	}
}
