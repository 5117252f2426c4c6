package commands

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"paas/internal/paas"
	"paas/scheduler"
)

// fakeVolumes are storage volumes by name.
type fakeVolumes map[string]scheduler.StorageVolume

func (f fakeVolumes) Ensure(_ context.Context, name, owner string, _ bool, _, _ int) (scheduler.StorageVolume, bool, error) {
	if v, ok := f[name]; ok {
		return v, false, nil
	}
	f[name] = scheduler.StorageVolume{Name: name, Docker: "inst-storage-" + name, Owner: owner, Node: "node1"}
	return f[name], true, nil
}

func (f fakeVolumes) Get(_ context.Context, name string) (scheduler.StorageVolume, error) {
	if v, ok := f[name]; ok {
		return v, nil
	}
	return scheduler.StorageVolume{}, scheduler.ErrVolumeNotFound
}

func (f fakeVolumes) List(context.Context) ([]scheduler.StorageVolume, error) { return nil, nil }
func (f fakeVolumes) Node(context.Context) (string, error)                    { return "node1", nil }

// fakeStoragePipeline applies the change to the stored app, as
// deploy.Pipeline.SetStorage does once the rollout served.
type fakeStoragePipeline struct {
	store   *fakeStore
	reasons []string
}

func (p *fakeStoragePipeline) SetStorage(_ context.Context, app string, _ paas.Identity, reason string, change func(*paas.App) error, _ io.Writer) error {
	_, err := p.store.UpdateApp(app, change)
	if err == nil {
		p.reasons = append(p.reasons, reason)
	}
	return err
}

func newStorageEnv(t *testing.T) (*Dispatcher, *fakeStore, *fakeStoragePipeline, fakeVolumes) {
	t.Helper()
	st := newFakeStore(&paas.App{Name: "alpha", Owner: "alice", Current: 1}, &paas.App{Name: "bravo", Owner: "bob"})
	pl := &fakeStoragePipeline{store: st}
	vols := fakeVolumes{"other": {Name: "other", Owner: "bob", Node: "node2"}}
	d := NewDispatcher(st, "1", StorageCommands(&Storage{Apps: st, Volumes: vols, Pipeline: pl, Root: "/srv/storage", DataDir: "/var/lib/paas"}))
	return d, st, pl, vols
}

func runStorage(d *Dispatcher, id paas.Identity, args ...string) (int, string, string) {
	var out, errb strings.Builder
	code := d.RunCommand(context.Background(), id, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestStorageMountRefusals(t *testing.T) {
	d, st, pl, _ := newStorageEnv(t)
	if code, _, errb := runStorage(d, alice, "storage:ensure-directory", "data"); code != 0 {
		t.Fatalf("ensure-directory: %d %s", code, errb)
	}
	cases := []struct {
		name string
		id   paas.Identity
		arg  string
		want string
	}{
		{"host path for a user", alice, "/srv/storage/x:/data", "administrators only"},
		{"docker socket", root, "/var/run/docker.sock:/var/run/docker.sock", "under /var/run"},
		{"host root", root, "/:/data", "cannot be mounted"},
		{"outside root", root, "/home/x:/data", "outside the storage root"},
		{"data dir", root, "/var/lib/paas/db:/data", "data dir"},
		{"relative container path", alice, "data:data", "not absolute"},
		{"dotdot", root, "/srv/storage/../../etc:/data", `holds ".."`},
		{"missing volume", alice, "nope:/data", "does not exist"},
		{"someone else's volume", alice, "other:/data", "belongs to bob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errb := runStorage(d, tc.id, "storage:mount", "alpha", tc.arg)
			if code != ExitError || !strings.Contains(errb, tc.want) {
				t.Fatalf("storage:mount alpha %s = %d %q, want exit 1 saying %q", tc.arg, code, errb, tc.want)
			}
		})
	}
	if a, _ := st.App("alpha"); len(a.Mounts) != 0 || a.StorageNode != "" || len(pl.reasons) != 0 {
		t.Errorf("refused mounts changed the app: %+v, rollouts %q", a.Mounts, pl.reasons)
	}
	if code, _, _ := runStorage(d, bob, "storage:mount", "alpha", "other:/data"); code != ExitNotFound {
		t.Errorf("bob mounting into alice's app: exit %d, want 20", code)
	}
}

func TestStorageMountUnmount(t *testing.T) {
	d, st, pl, _ := newStorageEnv(t)
	runStorage(d, alice, "storage:ensure-directory", "data")
	if code, out, errb := runStorage(d, alice, "storage:mount", "alpha", "data:/app/data"); code != 0 || !strings.Contains(out, "Mounting data:/app/data in alpha") {
		t.Fatalf("mount: %d %q %q", code, out, errb)
	}
	a, _ := st.App("alpha")
	if !slices.Equal(a.Mounts, []paas.Mount{{Volume: "data", ContainerPath: "/app/data"}}) || a.StorageNode != "node1" {
		t.Fatalf("after mount: %+v on %q", a.Mounts, a.StorageNode)
	}
	// the same path twice, and a volume on another node, are refused
	if code, _, errb := runStorage(d, root, "storage:mount", "alpha", "/srv/storage/x:/app/data"); code != ExitError || !strings.Contains(errb, "mounted at /app/data already") {
		t.Errorf("second mount at one path: %d %q", code, errb)
	}
	if code, _, errb := runStorage(d, root, "storage:mount", "alpha", "other:/other"); code != ExitError || !strings.Contains(errb, "pinned to node node1") {
		t.Errorf("volume on another node: %d %q", code, errb)
	}
	code, out, _ := runStorage(d, alice, "storage:list", "alpha", "--format", "json")
	if code != 0 || strings.TrimSpace(out) != `[{"host_path":"data","container_path":"/app/data","volume_options":"","volume":"data","docker_volume":"inst-storage-data"}]` {
		t.Errorf("storage:list json = %d %s", code, out)
	}
	code, out, _ = runStorage(d, alice, "storage:report", "alpha")
	if code != 0 || !strings.Contains(out, "Storage pinned node:") || !strings.Contains(out, "node1") {
		t.Errorf("storage:report = %d %s", code, out)
	}
	if code, _, errb := runStorage(d, alice, "storage:unmount", "alpha", "data:/elsewhere"); code != ExitError || !strings.Contains(errb, "is not mounted") {
		t.Errorf("unmount of what is not mounted: %d %q", code, errb)
	}
	if code, _, errb := runStorage(d, alice, "storage:unmount", "alpha", "data:/app/data"); code != 0 {
		t.Fatalf("unmount: %d %q", code, errb)
	}
	a, _ = st.App("alpha")
	if len(a.Mounts) != 0 || a.StorageNode != "" {
		t.Errorf("after unmount: %+v on %q", a.Mounts, a.StorageNode)
	}
	if want := []string{"storage:mount data:/app/data", "storage:unmount data:/app/data"}; !slices.Equal(pl.reasons, want) {
		t.Errorf("rollouts %q, want %q", pl.reasons, want)
	}
}

func TestStorageEnsureDirectory(t *testing.T) {
	d, _, _, vols := newStorageEnv(t)
	for _, tc := range []struct{ args []string }{{[]string{"Bad_Name"}}, {[]string{"../x"}}, {[]string{"--chown", "nobody", "ok"}}} {
		if code, _, _ := runStorage(d, alice, append([]string{"storage:ensure-directory"}, tc.args...)...); code != ExitError {
			t.Errorf("ensure-directory %q: exit %d, want 1", tc.args, code)
		}
	}
	if _, ok := vols["ok"]; ok {
		t.Error("a refused ensure-directory made a volume")
	}
	if code, _, errb := runStorage(d, alice, "storage:ensure-directory", "other"); code != ExitError || !strings.Contains(errb, "belongs to someone else") {
		t.Errorf("ensure of bob's volume by alice: %d %q", code, errb)
	}
}

// storage:report takes the app as Dokku's global --app too; without an app
// it reports every app the caller may use, and no other.
func TestStorageReportApps(t *testing.T) {
	d, _, _, _ := newStorageEnv(t)
	code, out, errb := runStorage(d, alice, "--app", "alpha", "storage:report", "--format", "json")
	if code != 0 || !strings.Contains(out, `"mounts":[]`) {
		t.Errorf("--app alpha storage:report = %d %q %q", code, out, errb)
	}
	code, out, _ = runStorage(d, alice, "storage:report")
	if code != 0 || !strings.Contains(out, "alpha storage information") || strings.Contains(out, "bravo") {
		t.Errorf("alice's storage:report = %d %q", code, out)
	}
	if code, _, _ := runStorage(d, alice, "storage:report", "bravo"); code != ExitNotFound {
		t.Errorf("storage:report of bob's app by alice: exit %d, want 20", code)
	}
}
