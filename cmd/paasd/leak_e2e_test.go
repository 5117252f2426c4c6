package main

// no-leak: the check that config values leak nowhere a person with access to
// the machine, Docker or paasd's files would look.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/paas"
)

func init() {
	scriptCmds["no-leak"] = cmdNoLeak
}

// leakValue is a config value of an app that must not be readable anywhere
// but in the environment of that app's own processes.
type leakValue struct {
	app   string
	value []byte
	held  int // processes of app whose environment holds it (the positive control)
}

// leakScan is what no-leak looked at and what it found.
type leakScan struct {
	vals   []*leakValue
	leaks  []string
	counts []string
}

// look searches data for every value; where names what data is.
func (s *leakScan) look(where string, data []byte) {
	for _, v := range s.vals {
		if bytes.Contains(data, v.value) {
			s.leaks = append(s.leaks, fmt.Sprintf("%s holds %s's value", where, v.app))
		}
	}
}

// lookReader searches r as look does, in pieces, and returns its size.
func (s *leakScan) lookReader(where string, r io.Reader) (int64, error) {
	longest := 0
	for _, v := range s.vals {
		longest = max(longest, len(v.value))
	}
	buf := make([]byte, 0, 256<<10)
	found := map[*leakValue]bool{}
	var n int64
	for {
		start := len(buf)
		m, err := r.Read(buf[start:cap(buf)])
		buf = buf[:start+m]
		n += int64(m)
		for _, v := range s.vals {
			if !found[v] && bytes.Contains(buf, v.value) {
				found[v] = true
				s.leaks = append(s.leaks, fmt.Sprintf("%s holds %s's value", where, v.app))
			}
		}
		if len(buf) > longest {
			buf = append(buf[:0], buf[len(buf)-longest+1:]...) // a value may straddle two reads
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func (s *leakScan) count(format string, args ...any) {
	s.counts = append(s.counts, fmt.Sprintf(format, args...))
}

// cmdNoLeak: no-leak APP=VALUE...: fail when a VALUE (APP's config value)
// can be read anywhere but in the environment of APP's own processes: the
// spec of every Swarm service of the installation (docker service inspect),
// every task of them (docker inspect), its secrets and configs (a config's
// data decoded), every container of it (inspect, top, diff, the contents of
// every file of its export, logs), the command line and environment of every
// process of the machine (/proc), every file of paasd's data directory (the
// store), paasd's log and the audit log (ssh paas events). It prints how
// many of each it looked at. The positive control: each VALUE must be in the
// environment of at least one process of APP, so a check that looks nowhere
// does not pass.
func cmdNoLeak(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: no-leak APP=VALUE... (no !)")
	}
	if len(args) == 0 {
		ts.Fatalf("usage: no-leak APP=VALUE...")
	}
	s := &leakScan{}
	for _, a := range args {
		app, value, ok := strings.Cut(a, "=")
		if !ok || app == "" || len(value) < 8 {
			ts.Fatalf("no-leak: %q: want APP=VALUE, a VALUE of 8 bytes or more", a)
		}
		s.vals = append(s.vals, &leakValue{app: app, value: []byte(value)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if h := ts.Getenv("DOCKER_HOST"); h != "" {
		opts = append(opts, client.WithHost(h))
	}
	cli, err := client.NewClientWithOpts(opts...)
	ts.Check(err)
	defer cli.Close()
	name := ts.Getenv("PAAS_NAME")
	ours := filters.NewArgs(filters.Arg("label", paas.LabelInstallation+"="+name))

	services := s.swarmObjects(ctx, ts, cli, ours)
	containers := s.containers(ctx, ts, cli, ours, services)
	s.processes(containers)
	s.files(ts, "data dir", ts.Getenv("DATA_DIR"))
	logData, err := os.ReadFile(filepath.Join(ts.Getenv("WORK"), ".paasd.log"))
	ts.Check(err)
	s.look("paasd's log", logData)
	s.count("paasd's log: %d lines", bytes.Count(logData, []byte("\n")))
	events, err := exec.Command("ssh", "-F", ts.Getenv("SSHCONFIG"), "paas", "events", "-n", "0", "--format", "json").Output()
	if err != nil {
		ts.Fatalf("ssh paas events: %v", err)
	}
	var evs []json.RawMessage
	ts.Check(json.Unmarshal(events, &evs))
	s.look("the audit log (ssh paas events)", events)
	s.count("audit log: %d events", len(evs))

	fmt.Fprintf(ts.Stdout(), "no-leak looked at: %s\n", strings.Join(s.counts, "; "))
	for _, v := range s.vals {
		fmt.Fprintf(ts.Stdout(), "positive control: %s's value is in the environment of %d of its processes\n", v.app, v.held)
		if v.held == 0 {
			s.leaks = append(s.leaks, fmt.Sprintf("positive control: no process of %s has its value in its environment: the check proves nothing", v.app))
		}
	}
	if len(services) == 0 || len(containers) == 0 || len(evs) == 0 {
		s.leaks = append(s.leaks, "nothing to look at: no service, container or event")
	}
	if len(s.leaks) > 0 {
		ts.Fatalf("no-leak:\n%s", strings.Join(s.leaks, "\n"))
	}
}

// swarmObjects looks at the installation's services, their tasks, secrets
// and configs, and returns the services.
func (s *leakScan) swarmObjects(ctx context.Context, ts *testscript.TestScript, cli *client.Client, ours filters.Args) []swarm.Service {
	services, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: ours})
	ts.Check(err)
	tasks := 0
	for _, svc := range services {
		_, raw, err := cli.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		ts.Check(err)
		s.look("service "+svc.Spec.Name, raw)
		ts2, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
		ts.Check(err)
		for _, t := range ts2 {
			_, raw, err := cli.TaskInspectWithRaw(ctx, t.ID)
			if client.IsErrNotFound(err) {
				continue
			}
			ts.Check(err)
			s.look(fmt.Sprintf("task %s of %s", t.ID, svc.Spec.Name), raw)
			tasks++
		}
	}
	secrets, err := cli.SecretList(ctx, swarm.SecretListOptions{Filters: ours})
	ts.Check(err)
	for _, sec := range secrets {
		_, raw, err := cli.SecretInspectWithRaw(ctx, sec.ID)
		ts.Check(err)
		s.look("secret "+sec.Spec.Name, raw)
	}
	configs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: ours})
	ts.Check(err)
	for _, c := range configs {
		cfg, raw, err := cli.ConfigInspectWithRaw(ctx, c.ID)
		ts.Check(err)
		s.look("config "+c.Spec.Name, raw)
		s.look("config "+c.Spec.Name+"'s data", cfg.Spec.Data) // base64 in raw
	}
	s.count("%d services, %d tasks, %d secrets, %d configs", len(services), tasks, len(secrets), len(configs))
	return services
}

// containers looks at every container of the installation (labelled so, or
// a task of one of its services) and returns them by ID.
func (s *leakScan) containers(ctx context.Context, ts *testscript.TestScript, cli *client.Client, ours filters.Args, services []swarm.Service) map[string]container.Summary {
	byID := map[string]container.Summary{}
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: ours})
	ts.Check(err)
	for _, c := range list {
		byID[c.ID] = c
	}
	for _, svc := range services {
		list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.id="+svc.ID))})
		ts.Check(err)
		for _, c := range list {
			byID[c.ID] = c
		}
	}
	var running, procs, changes, files int
	var exported, logBytes int64
	for id, c := range byID {
		where := "container " + strings.TrimPrefix(slices.Concat(c.Names, []string{id})[0], "/")
		info, raw, err := cli.ContainerInspectWithRaw(ctx, id, false)
		if client.IsErrNotFound(err) {
			delete(byID, id) // gone meanwhile (a one-off task ended)
			continue
		}
		ts.Check(err)
		s.look(where+" (inspect)", raw)
		if info.State != nil && info.State.Running {
			top, err := cli.ContainerTop(ctx, id, nil)
			if err == nil {
				running++
				procs += len(top.Processes)
				for _, p := range top.Processes {
					s.look(where+" (top)", []byte(strings.Join(p, " ")))
				}
			}
		}
		diff, err := cli.ContainerDiff(ctx, id)
		if err == nil {
			changes += len(diff)
			for _, d := range diff {
				s.look(where+" (diff)", []byte(d.Path))
			}
		}
		if rc, err := cli.ContainerExport(ctx, id); err == nil {
			n, size, err := s.lookTar(where+" (export)", rc)
			rc.Close()
			ts.Check(err)
			files += n
			exported += size
		}
		rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err == nil {
			var out bytes.Buffer
			if info.Config != nil && info.Config.Tty {
				_, err = io.Copy(&out, rc)
			} else {
				_, err = stdcopy.StdCopy(&out, &out, rc)
			}
			rc.Close()
			ts.Check(err)
			s.look(where+" (logs)", out.Bytes())
			logBytes += int64(out.Len())
		}
	}
	s.count("%d containers (inspect; top of %d running, %d processes; diff, %d changes; export, %d files, %d MB; logs, %d bytes)",
		len(byID), running, procs, changes, files, exported>>20, logBytes)
	return byID
}

// lookTar looks at the names and the contents of every file of a tar stream.
func (s *leakScan) lookTar(where string, r io.Reader) (files int, size int64, err error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, size, nil
		}
		if err != nil {
			return files, size, err
		}
		s.look(where+" "+h.Name, []byte(h.Name+"\x00"+h.Linkname))
		if h.Typeflag != tar.TypeReg {
			continue
		}
		n, err := s.lookReader(where+" /"+h.Name, tr)
		if err != nil {
			return files, size, err
		}
		files++
		size += n
	}
}

// processes looks at the command line and the environment of every process
// of the machine. A value in the environment of a process of a container
// of its own app is what the app is meant to see: that counts for the
// positive control, anywhere else it is a leak.
func (s *leakScan) processes(containers map[string]container.Summary) {
	dirs, _ := os.ReadDir("/proc")
	n := 0
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		pid := d.Name()
		cmdline, err1 := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		environ, err2 := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		if err1 != nil && err2 != nil {
			continue // gone meanwhile
		}
		n++
		s.look("the command line of process "+pid, cmdline)
		for _, v := range s.vals {
			if !bytes.Contains(environ, v.value) {
				continue
			}
			if app := appOfProcess(pid, containers); app == v.app {
				v.held++
			} else {
				s.leaks = append(s.leaks, fmt.Sprintf("the environment of process %s (%s) holds %s's value", pid, cmdlineText(cmdline), v.app))
			}
		}
	}
	s.count("%d processes (/proc/*/cmdline and environ)", n)
}

// appOfProcess is the paas.app label of the container process pid runs
// in, from its cgroup, which names the container's ID.
func appOfProcess(pid string, containers map[string]container.Summary) string {
	f, err := os.Open(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for id, c := range containers {
			if strings.Contains(sc.Text(), id) {
				return c.Labels[paas.LabelApp]
			}
		}
	}
	return ""
}

func cmdlineText(b []byte) string {
	s := strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// files looks at every regular file under dir.
func (s *leakScan) files(ts *testscript.TestScript, what, dir string) {
	n := 0
	var size int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := s.lookReader(what+" file "+path, f)
		n++
		size += m
		return err
	})
	ts.Check(err)
	s.count("%s: %d files, %d MB", what, n, size>>20)
}
