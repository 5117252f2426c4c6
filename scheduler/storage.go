package scheduler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"paas/internal/paas"
)

// VolumeName is the Docker volume of the installation's storage volume
// name (storage:ensure-directory NAME): prefixed like every Swarm object.
func VolumeName(installation, name string) string {
	return objectName(installation, "storage", name)
}

// dockerMounts are rel's storage mounts as Docker takes them.
func dockerMounts(installation string, mounts []paas.Mount) []mount.Mount {
	var out []mount.Mount
	for _, m := range mounts {
		if m.Volume != "" {
			out = append(out, mount.Mount{Type: mount.TypeVolume, Source: VolumeName(installation, m.Volume), Target: m.ContainerPath})
		} else {
			out = append(out, mount.Mount{Type: mount.TypeBind, Source: m.HostPath, Target: m.ContainerPath})
		}
	}
	return out
}

// withStorage mounts rel's storage in spec's tasks and pins them to the
// node that holds it.
func (s *Swarm) withStorage(spec *swarm.ServiceSpec, rel *paas.Release) {
	if len(rel.Mounts) == 0 {
		return
	}
	spec.TaskTemplate.ContainerSpec.Mounts = dockerMounts(s.name, rel.Mounts)
	if rel.Node != "" {
		pl := *spec.TaskTemplate.Placement
		pl.Constraints = append(slices.Clone(pl.Constraints), "node.id=="+rel.Node)
		spec.TaskTemplate.Placement = &pl
	}
}

// VolumeAPI is the part of the Docker client storage volumes need.
type VolumeAPI interface {
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
	VolumeInspect(ctx context.Context, volumeID string) (volume.Volume, error)
	VolumeList(ctx context.Context, options volume.ListOptions) (volume.ListResponse, error)
	Info(ctx context.Context) (system.Info, error)
}

var _ VolumeAPI = (*client.Client)(nil)

// ErrVolumeNotFound: no storage volume of that name.
var ErrVolumeNotFound = errors.New("storage volume does not exist")

// Volumes are the installation's storage volumes: Docker volumes of the
// daemon paasd talks to, labelled with the installation.
type Volumes struct {
	cli  VolumeAPI
	name string
}

// NewVolumes returns the storage volumes of the installation name.
func NewVolumes(cli VolumeAPI, name string) *Volumes { return &Volumes{cli: cli, name: name} }

// StorageVolume is one storage volume.
type StorageVolume struct {
	Name       string `json:"name"`
	Docker     string `json:"docker_volume"`
	Owner      string `json:"owner"`
	Node       string `json:"node"`
	Mountpoint string `json:"mountpoint"`
	CreatedAt  string `json:"created_at"`
}

func (v *Volumes) fromDocker(dv volume.Volume) StorageVolume {
	return StorageVolume{
		Name: dv.Labels[paas.LabelVolume], Docker: dv.Name, Owner: dv.Labels[paas.LabelVolumeOwner],
		Node: dv.Labels[paas.LabelVolumeNode], Mountpoint: dv.Mountpoint, CreatedAt: dv.CreatedAt,
	}
}

// Node is the Swarm node ID of the daemon paasd talks to: where volumes are
// made and one-off tasks run.
func (v *Volumes) Node(ctx context.Context) (string, error) {
	info, err := v.cli.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	return info.Swarm.NodeID, nil
}

// Get returns the storage volume name.
func (v *Volumes) Get(ctx context.Context, name string) (StorageVolume, error) {
	dv, err := v.cli.VolumeInspect(ctx, VolumeName(v.name, name))
	if cerrdefs.IsNotFound(err) {
		return StorageVolume{}, fmt.Errorf("%w: %s (storage:ensure-directory %s makes it)", ErrVolumeNotFound, name, name)
	}
	if err != nil {
		return StorageVolume{}, fmt.Errorf("inspect volume %s: %w", name, err)
	}
	if dv.Labels[paas.LabelInstallation] != v.name || dv.Labels[paas.LabelVolume] != name {
		return StorageVolume{}, fmt.Errorf("volume %s exists but is not a storage volume of this installation", dv.Name)
	}
	return v.fromDocker(dv), nil
}

// List returns every storage volume, by name.
func (v *Volumes) List(ctx context.Context) ([]StorageVolume, error) {
	resp, err := v.cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+v.name),
		filters.Arg("label", paas.LabelVolume),
	)})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []StorageVolume
	for _, dv := range resp.Volumes {
		out = append(out, v.fromDocker(*dv))
	}
	slices.SortFunc(out, func(a, b StorageVolume) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Ensure makes the storage volume name unless it exists, owned by owner,
// its root directory chowned to uid:gid when chown (which needs paasd on
// the daemon's host; an error says so and leaves the volume). created says
// whether it was made now.
func (v *Volumes) Ensure(ctx context.Context, name, owner string, chown bool, uid, gid int) (StorageVolume, bool, error) {
	if sv, err := v.Get(ctx, name); err == nil || !errors.Is(err, ErrVolumeNotFound) {
		return sv, false, err
	}
	node, err := v.Node(ctx)
	if err != nil {
		return StorageVolume{}, false, err
	}
	dv, err := v.cli.VolumeCreate(ctx, volume.CreateOptions{
		Name:   VolumeName(v.name, name),
		Driver: "local",
		Labels: map[string]string{
			paas.LabelInstallation: v.name,
			paas.LabelVolume:       name,
			paas.LabelVolumeOwner:  owner,
			paas.LabelVolumeNode:   node,
		},
	})
	if err != nil {
		return StorageVolume{}, false, fmt.Errorf("create volume %s: %w", name, err)
	}
	sv := v.fromDocker(dv)
	if chown {
		if err := os.Chown(sv.Mountpoint, uid, gid); err != nil {
			return sv, true, fmt.Errorf("chown volume %s: %w", name, err)
		}
	}
	return sv, true, nil
}
