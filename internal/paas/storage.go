package paas

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// LabelVolume names the storage volume (storage:ensure-directory NAME) a
// Docker volume of the installation is; LabelVolumeOwner is who made it and
// LabelVolumeNode the Swarm node that holds it.
const (
	LabelVolume      = "paas.volume"
	LabelVolumeOwner = "paas.volume.owner"
	LabelVolumeNode  = "paas.volume.node"
)

// DefaultStorageRoot is where administrators' host-path mounts must lie
// (paasd serve --storage-root).
const DefaultStorageRoot = "/var/lib/paas/storage"

// ErrBadMount is wrapped by every refusal of a storage mount.
var ErrBadMount = errors.New("invalid mount")

// Mount is one storage mount of an app: a named volume of the
// installation, or (administrators only) a directory of the host, at an
// absolute path in the app's containers.
type Mount struct {
	// Volume is the name given to storage:ensure-directory; empty for a
	// host-path mount.
	Volume string `json:"volume,omitempty"`
	// HostPath is the host directory of a host-path mount.
	HostPath string `json:"host_path,omitempty"`
	// ContainerPath is where the app sees it.
	ContainerPath string `json:"container_path"`
}

// Source is what the mount mounts: the volume's name or the host path.
func (m Mount) Source() string {
	if m.Volume != "" {
		return m.Volume
	}
	return m.HostPath
}

// String is the mount as storage:mount takes it: SOURCE:/container/path.
func (m Mount) String() string { return m.Source() + ":" + m.ContainerPath }

var volumeNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// ValidateVolumeName reports whether name may name a storage volume: a
// lowercase DNS label, as an app name.
func ValidateVolumeName(name string) error {
	if len(name) == 0 || len(name) > 63 || !volumeNameRe.MatchString(name) {
		return fmt.Errorf("invalid storage name %q: use lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// forbiddenHostRoots are host directories no mount may reach into, whatever
// the storage root: the Docker socket and the system's own trees.
var forbiddenHostRoots = []string{"/var/run", "/run", "/proc", "/sys", "/dev", "/etc", "/boot", "/root"}

// ParseMount parses storage:mount's SOURCE:/container/path. SOURCE is a
// volume name, or an absolute host path that must lie strictly inside
// storageRoot and outside dataDir (paasd's own files) and the system's
// trees. Relative paths, ".." and paths that are not clean are refused
// rather than resolved, so what is stored is what is mounted.
func ParseMount(arg, storageRoot, dataDir string) (Mount, error) {
	src, dst, ok := strings.Cut(arg, ":")
	if !ok || src == "" || dst == "" {
		return Mount{}, fmt.Errorf("%w %q: expected NAME:/container/path or /host/path:/container/path", ErrBadMount, arg)
	}
	if strings.Contains(dst, ":") {
		return Mount{}, fmt.Errorf("%w %q: mount options are not supported", ErrBadMount, arg)
	}
	if err := checkAbsClean("container path", dst); err != nil {
		return Mount{}, err
	}
	if dst == "/" {
		return Mount{}, fmt.Errorf("%w: the container path cannot be /", ErrBadMount)
	}
	if !strings.HasPrefix(src, "/") {
		if strings.Contains(src, "/") || src == "." || src == ".." {
			return Mount{}, fmt.Errorf("%w %q: a host path must be absolute", ErrBadMount, src)
		}
		if err := ValidateVolumeName(src); err != nil {
			return Mount{}, fmt.Errorf("%w: %v", ErrBadMount, err)
		}
		return Mount{Volume: src, ContainerPath: dst}, nil
	}
	if err := CheckHostPath(src, storageRoot, dataDir); err != nil {
		return Mount{}, err
	}
	return Mount{HostPath: src, ContainerPath: dst}, nil
}

// CheckHostPath refuses a host path that is not absolute and clean, is
// not strictly inside root, or reaches into dataDir or a system tree.
func CheckHostPath(p, root, dataDir string) error {
	if err := checkAbsClean("host path", p); err != nil {
		return err
	}
	if p == "/" {
		return fmt.Errorf("%w: the host's / cannot be mounted", ErrBadMount)
	}
	for _, f := range forbiddenHostRoots {
		if within(p, f) {
			return fmt.Errorf("%w: %s is under %s, which cannot be mounted", ErrBadMount, p, f)
		}
	}
	if dataDir != "" && (within(p, dataDir) || within(dataDir, p)) {
		return fmt.Errorf("%w: %s overlaps paas's data dir, which cannot be mounted", ErrBadMount, p)
	}
	if root == "" || p == root || !within(p, root) {
		return fmt.Errorf("%w: %s is outside the storage root %s (paasd serve --storage-root): host paths must lie inside it", ErrBadMount, p, root)
	}
	return nil
}

func checkAbsClean(what, p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: the %s %s is not absolute", ErrBadMount, what, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." || el == "." {
			return fmt.Errorf("%w: the %s %s holds %q", ErrBadMount, what, p, el)
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("%w: the %s %s is not clean (double or trailing slash)", ErrBadMount, what, p)
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	dir = strings.TrimRight(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/") || dir == ""
}

// ChownIDs are storage:ensure-directory --chown's owners, as Dokku's
// (uid:gid of the volume's root directory); "false" leaves it as Docker
// makes it (root).
var ChownIDs = map[string][2]int{
	"herokuish": {32767, 32767},
	"heroku":    {1000, 1000},
	"packeto":   {2000, 2000},
	"paketo":    {2000, 2000},
	"root":      {0, 0},
}

// DefaultChown is --chown's default: the user paas's buildpacks images run
// as (1000), who can then write; root in a Dockerfile image writes anyway.
const DefaultChown = "heroku"
