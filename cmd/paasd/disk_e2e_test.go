package main

// The disk-usage script command: what an installation holds on disk and in
// the Docker image store, recorded before a scenario and compared after it.

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/registry"
)

// diskUsage is one measure of an installation's footprint.
type diskUsage struct {
	Images        int   // images named under the installation's registry prefix
	ImageBytes    int64 // their sizes
	AppImages     int   // images (dangling ones too) a build labelled with one of the scenario's apps
	CacheVolumes  int   // the installation's build cache volumes
	RegistryBytes int64 // files of the embedded registry
	DataBytes     int64 // files of the data dir, the registry's included, but paas.db
	DBBytes       int64 // paas.db
}

// dbGrowth is how much paas.db may grow across a scenario: it keeps the
// audit log, which must record every command (a few hundred events of a few
// hundred bytes here), and bbolt never shrinks its file, keeping freed pages
// for reuse; everything else the apps stored in it is deleted with them.
const dbGrowth = 1 << 20

var diskUsages byWork[map[string]diskUsage]

func init() {
	// disk-usage record NAME APP-PREFIX: measure and keep as NAME.
	// disk-usage compare NAME APP-PREFIX: measure again; fail unless
	// everything is back to NAME (paas.db within dbGrowth).
	scriptCmds["disk-usage"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 || (args[0] != "record" && args[0] != "compare") {
			ts.Fatalf("usage: disk-usage record|compare NAME APP-PREFIX")
		}
		in := installations.get(ts.Getenv("WORK"))
		now, err := measureDisk(in, args[2])
		ts.Check(err)
		if args[0] == "record" {
			now, err = settledDisk(in, args[2], now)
			ts.Check(err)
		}
		fmt.Fprintf(ts.Stdout(), "%+v\n", now)
		if df, err := exec.Command("docker", "system", "df", "--format", "{{.Type}}: {{.TotalCount}} {{.Size}}").Output(); err == nil {
			fmt.Fprintf(ts.Stdout(), "docker system df (all installations): %s\n", strings.ReplaceAll(strings.TrimSpace(string(df)), "\n", ", "))
		}
		saved := diskUsages.get(in.work)
		if args[0] == "record" {
			if saved == nil {
				saved = map[string]diskUsage{}
				diskUsages.set(in.work, saved)
			}
			saved[args[1]] = now
			return
		}
		was, ok := saved[args[1]]
		if !ok {
			ts.Fatalf("no disk usage recorded as %s", args[1])
		}
		fmt.Fprintf(ts.Stdout(), "was %+v\n", was)
		// Images whose containers Docker is still removing go a few
		// seconds later (paasd tries again): wait up to a minute.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			grown := now.DBBytes - was.DBBytes
			n, w := now, was
			n.DBBytes, w.DBBytes = 0, 0
			if n == w && grown <= dbGrowth {
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("disk use is not back to %s: %+v, was %+v; paas.db grew %d bytes (at most %d)", args[1], now, was, grown, dbGrowth)
			}
			now, err = measureDisk(in, args[2])
			ts.Check(err)
		}
	}
}

// settledDisk measures again until the footprint has stayed u for twice
// the registry's quiet time (up to a minute): the embedded registry
// collects the blobs an app destroyed just before left only once it has
// served no request for registry.DefaultQuiet, and a start recorded before
// that would count them.
func settledDisk(in *installation, appPrefix string, u diskUsage) (diskUsage, error) {
	since := time.Now()
	for deadline := since.Add(time.Minute); time.Since(since) < 2*registry.DefaultQuiet && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		now, err := measureDisk(in, appPrefix)
		if err != nil {
			return u, err
		}
		if now != u {
			u, since = now, time.Now()
		}
	}
	return u, nil
}

func measureDisk(in *installation, appPrefix string) (diskUsage, error) {
	var u diskUsage
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return u, err
	}
	defer cli.Close()
	ctx := context.Background()
	prefix := fmt.Sprintf("127.0.0.1:%d/%s/*", in.regPort, in.name)
	imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", prefix))})
	if err != nil {
		return u, err
	}
	for _, img := range imgs {
		u.Images++
		u.ImageBytes += img.Size
	}
	labelled, err := cli.ImageList(ctx, image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "paas.app"))})
	if err != nil {
		return u, err
	}
	for _, img := range labelled {
		if strings.HasPrefix(img.Labels["paas.app"], appPrefix) {
			u.AppImages++
		}
	}
	vols, err := cli.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", in.name+"-cache-"))})
	if err != nil {
		return u, err
	}
	u.CacheVolumes = len(vols.Volumes)
	err = filepath.WalkDir(in.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch rel, _ := filepath.Rel(in.dataDir, path); {
		case rel == "paas.db":
			u.DBBytes = fi.Size()
			return nil
		case strings.HasPrefix(rel, "registry"+string(os.PathSeparator)):
			u.RegistryBytes += fi.Size()
		}
		u.DataBytes += fi.Size()
		return nil
	})
	return u, err
}
