package commands

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"paas/internal/output"
	"paas/internal/paas"
	"paas/scheduler"
)

// StorageVolumes are the installation's named storage volumes.
type StorageVolumes interface {
	Ensure(ctx context.Context, name, owner string, chown bool, uid, gid int) (scheduler.StorageVolume, bool, error)
	Get(ctx context.Context, name string) (scheduler.StorageVolume, error)
	List(ctx context.Context) ([]scheduler.StorageVolume, error)
	// Node is the Swarm node where volumes are made (and one-off tasks run).
	Node(ctx context.Context) (string, error)
}

// StoragePipeline rolls a mount change out (deploy.Pipeline.SetStorage).
type StoragePipeline interface {
	SetStorage(ctx context.Context, app string, who paas.Identity, reason string, change func(*paas.App) error, out io.Writer) error
}

// StorageApps lists apps for storage:report without an app.
type StorageApps interface {
	AppStore
	Apps() ([]*paas.App, error)
}

// Storage serves the storage:* commands.
type Storage struct {
	Apps     StorageApps
	Volumes  StorageVolumes
	Pipeline StoragePipeline
	// Root is where administrators' host-path mounts must lie (--storage-root);
	// DataDir is paasd's own, which no mount may reach.
	Root, DataDir string
}

// StorageCommands returns the storage:* commands, Dokku's names and flags.
func StorageCommands(s *Storage) []*Command {
	chownValues := strings.Join(slices.Sorted(func(yield func(string) bool) {
		for k := range paas.ChownIDs {
			if !yield(k) {
				return
			}
		}
	}), "|") + "|false"
	mountDetails := `NAME is a volume made with storage:ensure-directory NAME; /host/path (administrators
only) must lie inside the storage root (paasd serve --storage-root). The container path
must be absolute. A deployed app is rolled out again with the change, without downtime;
on several nodes the app's tasks are pinned to the node that holds its volumes.`
	return []*Command{
		{Name: "storage:ensure-directory", Args: "[--chown " + chownValues + "] NAME", Help: "Create a named storage volume (kept across deploys; apps:destroy leaves it)", MinArgs: 1,
			Flags: map[string]bool{"--chown": true}, Run: s.ensure,
			Details: "The volume's root directory is owned by --chown's user: heroku (1000, the default: paas's buildpacks images run as 1000), herokuish (32767), paketo (2000), root, or false to leave it to Docker."},
		{Name: "storage:mount", Args: "APP NAME:/container/path|/host/path:/container/path", Help: "Mount a storage volume (or, administrators, a host directory) into the app's containers", App: true, MinArgs: 1, Details: mountDetails, Run: s.mount},
		{Name: "storage:unmount", Args: "APP NAME:/container/path|/host/path:/container/path", Help: "Remove a storage mount of the app (the volume and its data stay)", App: true, MinArgs: 1, Details: mountDetails, Run: s.unmount},
		{Name: "storage:list", Args: "APP [--format stdout|json]", Help: "List the app's storage mounts", App: true, Flags: formatFlag, Run: s.list},
		{Name: "storage:report", Args: "[APP] [--format stdout|json]", Help: "Show the storage mounts of one app or of every app, and the node they pin it to", NamesApp: true, Flags: formatFlag, Run: s.report},
	}
}

func (s *Storage) ensure(ctx context.Context, c *Call) error {
	if len(c.Args) > 1 {
		return fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[1:], " ")))
	}
	name := c.Args[0]
	if err := paas.ValidateVolumeName(name); err != nil {
		return refuse("%v", err)
	}
	chown := paas.DefaultChown
	if c.Has("--chown") {
		chown = c.Flags["--chown"]
	}
	ids, ok := paas.ChownIDs[chown]
	if !ok && chown != "false" {
		return refuse("unknown --chown %s: use %s", sanitize(chown), "herokuish, heroku, paketo, packeto, root or false")
	}
	sv, created, err := s.Volumes.Ensure(ctx, name, c.ID.Name, chown != "false", ids[0], ids[1])
	if err != nil {
		return err
	}
	if !created {
		if sv.Owner != c.ID.Name && !c.ID.Admin {
			return fmt.Errorf("storage %s exists and belongs to someone else", name)
		}
		output.Step(c.Out, "Storage %s exists already (Docker volume %s)", name, sv.Docker)
		return nil
	}
	output.Step(c.Out, "Created storage %s (Docker volume %s)", name, sv.Docker)
	if chown != "false" {
		output.Detail(c.Out, "owned by %s (%d:%d)", chown, ids[0], ids[1])
	}
	return nil
}

// parseMountArg parses and checks a mount argument for the caller: host
// paths are for administrators, and a volume must exist and be theirs
// (administrators may mount any).
func (s *Storage) parseMountArg(ctx context.Context, c *Call, checkVolume bool) (paas.Mount, string, error) {
	if len(c.Args) > 1 {
		return paas.Mount{}, "", fmt.Errorf("Unexpected argument(s): %s", sanitize(strings.Join(c.Args[1:], " ")))
	}
	m, err := paas.ParseMount(c.Args[0], s.Root, s.DataDir)
	if err != nil {
		return m, "", refuse("%v", err)
	}
	if m.HostPath != "" && !c.ID.Admin {
		return m, "", refuse("host-path mounts are for administrators only: make a volume with storage:ensure-directory NAME and mount NAME:%s", m.ContainerPath)
	}
	if m.Volume == "" || !checkVolume {
		return m, "", nil
	}
	sv, err := s.Volumes.Get(ctx, m.Volume)
	if err != nil {
		return m, "", refuse("%v", err)
	}
	if sv.Owner != c.ID.Name && !c.ID.Admin {
		return m, "", refuse("storage %s belongs to %s: only they or an administrator may mount it", m.Volume, sv.Owner)
	}
	return m, sv.Node, nil
}

func (s *Storage) mount(ctx context.Context, c *Call) error {
	m, volNode, err := s.parseMountArg(ctx, c, true)
	if err != nil {
		return err
	}
	node := volNode
	if node == "" { // a host path: pinned where paasd's daemon is
		if node, err = s.Volumes.Node(ctx); err != nil {
			return err
		}
	}
	change := func(a *paas.App) error {
		for _, old := range a.Mounts {
			if old.ContainerPath == m.ContainerPath {
				return refuse("%s is mounted at %s already (storage:unmount %s %s first)", old.Source(), m.ContainerPath, a.Name, old)
			}
		}
		if a.StorageNode != "" && len(a.Mounts) > 0 && a.StorageNode != node {
			return refuse("storage %s is on node %s, but %s is pinned to node %s by its other mounts", m.Source(), node, a.Name, a.StorageNode)
		}
		a.Mounts = append(slices.Clone(a.Mounts), m)
		a.StorageNode = node
		return nil
	}
	output.Step(c.Out, "Mounting %s in %s", m, c.App.Name)
	return s.Pipeline.SetStorage(ctx, c.App.Name, c.ID, "storage:mount "+m.String(), change, c.Out)
}

func (s *Storage) unmount(ctx context.Context, c *Call) error {
	m, _, err := s.parseMountArg(ctx, c, false)
	if err != nil {
		return err
	}
	change := func(a *paas.App) error {
		i := slices.Index(a.Mounts, m)
		if i < 0 {
			return refuse("%s is not mounted in %s (storage:list %s)", m, a.Name, a.Name)
		}
		a.Mounts = slices.Delete(slices.Clone(a.Mounts), i, i+1)
		if len(a.Mounts) == 0 {
			a.StorageNode = ""
		}
		return nil
	}
	output.Step(c.Out, "Unmounting %s from %s", m, c.App.Name)
	return s.Pipeline.SetStorage(ctx, c.App.Name, c.ID, "storage:unmount "+m.String(), change, c.Out)
}

// storageEntry is one mount in storage:list --format json, with Dokku's
// keys.
type storageEntry struct {
	HostPath      string `json:"host_path"`
	ContainerPath string `json:"container_path"`
	VolumeOptions string `json:"volume_options"`
	Volume        string `json:"volume,omitempty"`
	DockerVolume  string `json:"docker_volume,omitempty"`
}

func (s *Storage) entries(ctx context.Context, a *paas.App) []storageEntry {
	out := []storageEntry{}
	for _, m := range a.Mounts {
		e := storageEntry{HostPath: m.HostPath, ContainerPath: m.ContainerPath, Volume: m.Volume}
		if m.Volume != "" {
			e.HostPath = m.Volume
			if sv, err := s.Volumes.Get(ctx, m.Volume); err == nil {
				e.DockerVolume = sv.Docker
			}
		}
		out = append(out, e)
	}
	return out
}

func (s *Storage) list(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	if asJSON {
		return output.JSON(c.Out, s.entries(ctx, c.App))
	}
	output.Step(c.Out, "%s volume bind-mounts:", c.App.Name)
	for _, m := range c.App.Mounts {
		output.Detail(c.Out, "%s", m)
	}
	return nil
}

func (s *Storage) report(ctx context.Context, c *Call) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	var apps []*paas.App
	if len(c.Args) > 0 {
		a, err := usableApp(s.Apps, c.ID, c.Args[0])
		if err != nil {
			return err
		}
		apps = []*paas.App{a}
	} else {
		all, err := s.Apps.Apps()
		if err != nil {
			return err
		}
		for _, a := range all {
			if _, err := usableApp(s.Apps, c.ID, a.Name); err == nil {
				apps = append(apps, a)
			}
		}
	}
	if asJSON {
		out := map[string]any{}
		for _, a := range apps {
			out[a.Name] = map[string]any{"mounts": s.entries(ctx, a), "pinned-node": pinnedNode(a)}
		}
		if len(c.Args) > 0 {
			return output.JSON(c.Out, out[apps[0].Name])
		}
		return output.JSON(c.Out, out)
	}
	for _, a := range apps {
		var mounts []string
		for _, m := range a.Mounts {
			mounts = append(mounts, m.String())
		}
		err := report(c, false, a.Name+" storage information", []kv{
			{"Storage mounts", strings.Join(mounts, " ")},
			{"Storage pinned node", pinnedNode(a)},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// pinnedNode is the node an app's mounts pin it to, "" without mounts.
func pinnedNode(a *paas.App) string {
	if len(a.Mounts) == 0 {
		return ""
	}
	return a.StorageNode
}

// keptVolumes says, at apps:destroy, which volumes stay (Dokku leaves
// storage too): their data is not removed with the app.
func keptVolumes(w io.Writer, a *paas.App) {
	for _, m := range a.Mounts {
		if m.Volume != "" {
			output.Detail(w, "storage %s is kept: its data stays until an administrator removes the Docker volume", m.Volume)
		} else {
			output.Detail(w, "host directory %s is kept", m.HostPath)
		}
	}
}
