package paas_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
)

func TestValidateAppName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"simple", "hello", true},
		{"digits and dashes", "app-2-go", true},
		{"starts with digit", "1app", true},
		{"single char", "a", true},
		{"63 chars", strings.Repeat("a", 63), true},
		{"parent path", "../x", false},
		{"slash", "a/b", false},
		{"shell metachar", "a;id", false},
		{"uppercase", "A", false},
		{"empty", "", false},
		{"64 chars", strings.Repeat("a", 64), false},
		{"leading dash", "-x", false},
		{"underscore", "a_b", false},
		{"dot", "a.b", false},
		{"space", "a b", false},
		{"newline", "a\nb", false},
		{"trailing newline", "ab\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := paas.ValidateAppName(tc.input)
			if tc.ok && err != nil {
				t.Fatalf("ValidateAppName(%q) = %v, want nil", tc.input, err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatalf("ValidateAppName(%q) = nil, want error", tc.input)
				}
				if !errors.Is(err, paas.ErrInvalidName) {
					t.Fatalf("ValidateAppName(%q) = %v, want errors.Is ErrInvalidName", tc.input, err)
				}
			}
		})
	}
}

func TestValidateConfigKey(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"upper", "DATABASE_URL", true},
		{"lower", "foo", true},
		{"leading underscore", "_X", true},
		{"digits after first", "A1_2", true},
		{"single letter", "A", true},
		{"empty", "", false},
		{"leading digit", "1A", false},
		{"dash", "A-B", false},
		{"equals", "A=B", false},
		{"space", "A B", false},
		{"dollar", "A$", false},
		{"newline", "A\n", false},
		{"unicode", "É", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := paas.ValidateConfigKey(tc.input)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateConfigKey(%q) = %v, want ok=%v", tc.input, err, tc.ok)
			}
			if err != nil && !errors.Is(err, paas.ErrInvalidKey) {
				t.Fatalf("ValidateConfigKey(%q) = %v, want errors.Is ErrInvalidKey", tc.input, err)
			}
		})
	}
}

func TestValidateKeyName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"plain", "alice", true},
		{"email", "alice@example.com", true},
		{"mixed", "Bob_1.dev-x", true},
		{"64 chars", strings.Repeat("k", 64), true},
		{"65 chars", strings.Repeat("k", 65), false},
		{"empty", "", false},
		{"leading dot", ".alice", false},
		{"leading dash", "-alice", false},
		{"space", "alice smith", false},
		{"slash", "a/b", false},
		{"quote", `a"b`, false},
		{"newline", "a\nb", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := paas.ValidateKeyName(tc.input)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateKeyName(%q) = %v, want ok=%v", tc.input, err, tc.ok)
			}
		})
	}
}

func TestReleaseEnv(t *testing.T) {
	tests := []struct {
		name     string
		config   map[string]string
		global   map[string]string
		want     []string
		wantPort string
	}{
		{
			name:     "global vars under the app's",
			config:   map[string]string{"A": "app", "B": "b"},
			global:   map[string]string{"A": "global", "G": "g"},
			want:     []string{"A=app", "B=b", "G=g", "PORT=5000"},
			wantPort: "5000",
		},
		{
			name:     "a global PORT applies unless the app sets one",
			global:   map[string]string{"PORT": "8000"},
			want:     []string{"PORT=8000"},
			wantPort: "8000",
		},
		{
			name:     "nil config gets default port",
			config:   nil,
			want:     []string{"PORT=5000"},
			wantPort: "5000",
		},
		{
			name:     "sorted keys then port",
			config:   map[string]string{"ZED": "z", "ALPHA": "a", "MID": "m=1"},
			want:     []string{"ALPHA=a", "MID=m=1", "ZED=z", "PORT=5000"},
			wantPort: "5000",
		},
		{
			name:     "port override not duplicated",
			config:   map[string]string{"PORT": "8080", "A": "1", "Z": "2"},
			want:     []string{"A=1", "Z=2", "PORT=8080"},
			wantPort: "8080",
		},
		{
			name:     "empty port falls back to default",
			config:   map[string]string{"PORT": ""},
			want:     []string{"PORT=5000"},
			wantPort: "5000",
		},
		{
			name:     "values kept byte for byte",
			config:   map[string]string{"Q": "it's \"x\"\n$HOME `id`"},
			want:     []string{"Q=it's \"x\"\n$HOME `id`", "PORT=5000"},
			wantPort: "5000",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &paas.Release{Config: tc.config, Global: tc.global}
			got := r.Env()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Env() = %q, want %q", got, tc.want)
			}
			ports := 0
			for _, kv := range got {
				if strings.HasPrefix(kv, "PORT=") {
					ports++
				}
			}
			if ports != 1 {
				t.Fatalf("Env() has %d PORT entries, want 1", ports)
			}
			if p := r.Port(); p != tc.wantPort {
				t.Fatalf("Port() = %q, want %q", p, tc.wantPort)
			}
		})
	}
}

func TestImageRef(t *testing.T) {
	tests := []struct {
		name string
		img  paas.Image
		want string
	}{
		{"registry with port", paas.Image{Repository: "127.0.0.1:5001/paas/hello", Digest: "sha256:abc"}, "127.0.0.1:5001/paas/hello@sha256:abc"},
		{"plain", paas.Image{Repository: "hello", Digest: "sha256:0"}, "hello@sha256:0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.img.Ref(); got != tc.want {
				t.Fatalf("Ref() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppBranch(t *testing.T) {
	tests := []struct {
		name   string
		branch string
		want   string
	}{
		{"default", "", "main"},
		{"set", "production", "production"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &paas.App{DeployBranch: tc.branch}
			if got := a.Branch(); got != tc.want {
				t.Fatalf("Branch() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSortedKeys(t *testing.T) {
	got := paas.SortedKeys(map[string]string{"b": "", "a": "", "C": ""})
	want := []string{"C", "a", "b"}
	if !slices.Equal(got, want) {
		t.Fatalf("SortedKeys = %q, want %q", got, want)
	}
	if got := paas.SortedKeys(nil); len(got) != 0 {
		t.Fatalf("SortedKeys(nil) = %q, want empty", got)
	}
}

func TestValidateArg(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"plain", "web=3", true},
		{"unicode letters", "héllo-世界", true},
		{"space", "a b", true},
		{"newline", "a\nb", false},
		{"tab", "a\tb", false},
		{"NUL", "a\x00", false},
		{"escape", "\x1b[2J", false},
		{"DEL", "a\x7f", false},
		{"C1 CSI", "a\u009bb", false},
		{"C1 next line", "a\u0085", false},
		{"invalid UTF-8", "a\xffb", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := paas.ValidateArg(tc.input)
			if tc.ok != (err == nil) {
				t.Fatalf("ValidateArg(%q) = %v, want ok=%v", tc.input, err, tc.ok)
			}
		})
	}
	long := strings.Repeat("x", 100) + "\n"
	if err := paas.ValidateArg(long); err == nil || strings.Contains(err.Error(), strings.Repeat("x", 41)) || !errors.Is(err, paas.ErrControlChar) {
		t.Fatalf("ValidateArg(long) = %v: want ErrControlChar, the argument cut at 40 bytes", err)
	}
}

func TestValidateNewAppName(t *testing.T) {
	for name, ok := range map[string]bool{"hello": true, "router": false, "cnb-run": false, "router2": true, "Bad": false} {
		if err := paas.ValidateNewAppName(name); (err == nil) != ok || err != nil && !errors.Is(err, paas.ErrInvalidName) {
			t.Errorf("ValidateNewAppName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCheckSettings(t *testing.T) {
	var none paas.CheckSettings
	tests := []struct {
		name                   string
		set                    paas.CheckSettings
		web, worker            string
		disabledList, skipList string
	}{
		{"default", none, paas.CheckEnabled, paas.CheckEnabled, "none", "none"},
		{"all disabled", none.WithState(paas.CheckDisabled, nil), paas.CheckDisabled, paas.CheckDisabled, "_all_", "none"},
		{"all skipped", none.WithState(paas.CheckSkipped, nil), paas.CheckSkipped, paas.CheckSkipped, "none", "_all_"},
		{"worker disabled", none.WithState(paas.CheckDisabled, []string{"worker"}), paas.CheckEnabled, paas.CheckDisabled, "worker", "none"},
		{"all disabled, web enabled", none.WithState(paas.CheckDisabled, nil).WithState(paas.CheckEnabled, []string{"web"}), paas.CheckEnabled, paas.CheckDisabled, "_all_", "none"},
		{"worker skipped then disabled", none.WithState(paas.CheckSkipped, []string{"worker"}).WithState(paas.CheckDisabled, []string{"worker"}), paas.CheckEnabled, paas.CheckDisabled, "worker", "none"},
		{"app-wide resets single ones", none.WithState(paas.CheckDisabled, []string{"worker"}).WithState(paas.CheckSkipped, nil), paas.CheckSkipped, paas.CheckSkipped, "none", "_all_"},
		{"enable all", none.WithState(paas.CheckDisabled, []string{"web", "worker"}).WithState(paas.CheckEnabled, nil), paas.CheckEnabled, paas.CheckEnabled, "none", "none"},
		{"single state equal to the app-wide one is dropped", none.WithState(paas.CheckDisabled, []string{"worker"}).WithState(paas.CheckEnabled, []string{"worker"}), paas.CheckEnabled, paas.CheckEnabled, "none", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.set.State("web"); got != tc.web {
				t.Errorf("web %s, want %s", got, tc.web)
			}
			if got := tc.set.State("worker"); got != tc.worker {
				t.Errorf("worker %s, want %s", got, tc.worker)
			}
			if got := tc.set.List(paas.CheckDisabled); got != tc.disabledList {
				t.Errorf("disabled list %q, want %q", got, tc.disabledList)
			}
			if got := tc.set.List(paas.CheckSkipped); got != tc.skipList {
				t.Errorf("skipped list %q, want %q", got, tc.skipList)
			}
		})
	}
	if none.WithState(paas.CheckDisabled, []string{"worker"}); none.Procs != nil {
		t.Error("WithState changed its receiver's map")
	}
}

func TestParseProcessList(t *testing.T) {
	for in, want := range map[string][]string{"": nil, "_all_": nil, "web": {"web"}, "web,worker,web": {"web", "worker"}, " web , clock": {"web", "clock"}} {
		if got, err := paas.ParseProcessList(in); err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseProcessList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"web,", "Web", "a;b", "web,,worker", "x.1"} {
		if _, err := paas.ParseProcessList(bad); err == nil {
			t.Errorf("ParseProcessList(%q) accepted", bad)
		}
	}
}
