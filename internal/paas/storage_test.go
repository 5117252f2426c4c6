package paas

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMount(t *testing.T) {
	const root, data = "/srv/storage", "/var/lib/paas"
	ok := []struct {
		arg  string
		want Mount
	}{
		{"uploads:/app/uploads", Mount{Volume: "uploads", ContainerPath: "/app/uploads"}},
		{"a-1:/data", Mount{Volume: "a-1", ContainerPath: "/data"}},
		{"/srv/storage/x:/data", Mount{HostPath: "/srv/storage/x", ContainerPath: "/data"}},
		{"/srv/storage/x/y z:/data/y z", Mount{HostPath: "/srv/storage/x/y z", ContainerPath: "/data/y z"}},
	}
	for _, tc := range ok {
		got, err := ParseMount(tc.arg, root, data)
		if err != nil || got != tc.want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", tc.arg, got, err, tc.want)
		}
		if got.String() != tc.arg {
			t.Errorf("Mount(%q).String() = %q", tc.arg, got.String())
		}
	}
	bad := []struct{ name, arg, want string }{
		{"no colon", "uploads", "expected NAME:/container/path"},
		{"empty source", ":/data", "expected NAME"},
		{"empty target", "uploads:", "expected NAME"},
		{"options", "uploads:/data:ro", "mount options"},
		{"relative target", "uploads:data", "container path data is not absolute"},
		{"target root", "uploads:/", "cannot be /"},
		{"target dotdot", "uploads:/app/../etc", `holds ".."`},
		{"target dot", "uploads:/app/./x", `holds "."`},
		{"target not clean", "uploads:/app//x", "not clean"},
		{"relative host", "srv/x:/data", "must be absolute"},
		{"dot host", "./x:/data", "must be absolute"},
		{"dotdot name", "..:/data", "must be absolute"},
		{"bad name", "Up_loads:/data", "invalid storage name"},
		{"host root", "/:/data", "the host's / cannot be mounted"},
		{"docker socket", "/var/run/docker.sock:/var/run/docker.sock", "under /var/run"},
		{"run", "/run/docker.sock:/s", "under /run"},
		{"proc", "/proc:/p", "under /proc"},
		{"sys", "/sys/fs:/p", "under /sys"},
		{"dev", "/dev/sda:/p", "under /dev"},
		{"etc", "/etc/shadow:/p", "under /etc"},
		{"data dir", "/var/lib/paas/x:/p", "data dir"},
		{"outside root", "/home/x:/p", "outside the storage root /srv/storage"},
		{"root itself", "/srv/storage:/p", "outside the storage root"},
		{"prefix but not inside", "/srv/storagex/a:/p", "outside the storage root"},
		{"escape root", "/srv/storage/../../etc:/p", `holds ".."`},
		{"host not clean", "/srv/storage/x/:/p", "not clean"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMount(tc.arg, root, data)
			if err == nil || !errors.Is(err, ErrBadMount) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseMount(%q) = %v, want an ErrBadMount saying %q", tc.arg, err, tc.want)
			}
		})
	}
}

// The data dir is refused even when an operator puts it inside the storage root.
func TestParseMountDataDirInsideRoot(t *testing.T) {
	for _, arg := range []string{"/srv/paas/data/x:/p", "/srv/paas/data:/p", "/srv/paas:/p"} {
		if _, err := ParseMount(arg, "/srv", "/srv/paas/data"); err == nil || !strings.Contains(err.Error(), "data dir") {
			t.Errorf("ParseMount(%q) = %v, want the data dir refused", arg, err)
		}
	}
}

func TestValidateVolumeName(t *testing.T) {
	for _, name := range []string{"a", "myapp-uploads", strings.Repeat("a", 63)} {
		if err := ValidateVolumeName(name); err != nil {
			t.Errorf("ValidateVolumeName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "-a", "A", "a_b", "a.b", "a/b", "..", strings.Repeat("a", 64), "a b"} {
		if err := ValidateVolumeName(name); err == nil {
			t.Errorf("ValidateVolumeName(%q) = nil, want an error", name)
		}
	}
}
