package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"

	"paas/internal/paas"
)

// RoleRun marks one-off containers.
const RoleRun = "run"

// RunOptions describe a one-off task.
type RunOptions struct {
	Args   []string // the command, run like a Procfile command (after the image's entrypoint)
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer      // unused with a TTY: a terminal has one output stream
	TTY    *paas.Terminal // non-nil when the client asked for a terminal
	Detach bool           // start it and return its name at once
}

// Run starts a one-off container of rel on this node (a Swarm manager),
// attached to the installation network with the app's config, and connects
// it to the caller's streams. It returns the command's exit code once it
// exits; when ctx ends first (the SSH client hung up) the container is
// removed. With Detach it returns 0 once the container started, and the
// container removes itself when it exits.
func (s *Swarm) Run(ctx context.Context, rel *paas.Release, opts RunOptions) (int, error) {
	if len(opts.Args) == 0 {
		return 0, errors.New("run: no command given")
	}
	ref := rel.Image.Ref()
	rc, err := s.cli.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: s.registryAuth()})
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil {
		return 0, fmt.Errorf("pull %s: %w", ref, err)
	}

	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := objectName(s.name, rel.App, "run", hex.EncodeToString(b))
	env := rel.Env()
	if opts.TTY != nil && opts.TTY.Term != "" {
		env = append(env, "TERM="+opts.TTY.Term)
	}
	cfg := &container.Config{
		Image: ref,
		Cmd:   opts.Args,
		Env:   env,
		Labels: map[string]string{
			paas.LabelInstallation: s.name,
			paas.LabelRole:         RoleRun,
			paas.LabelApp:          rel.App,
			paas.LabelRelease:      strconv.Itoa(rel.Version),
		},
		Tty:          opts.TTY != nil && !opts.Detach,
		OpenStdin:    !opts.Detach,
		StdinOnce:    !opts.Detach,
		AttachStdin:  !opts.Detach,
		AttachStdout: !opts.Detach,
		AttachStderr: !opts.Detach,
	}
	if rel.Image.CNB {
		// A buildpacks image runs commands through its launcher, which sets
		// up the environment the buildpacks prepared.
		cfg.Entrypoint = []string{"/cnb/lifecycle/launcher"}
	}
	host := &container.HostConfig{AutoRemove: opts.Detach}
	if err := s.EnsureNetwork(ctx); err != nil {
		return 0, err
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{s.network: {}}}
	created, err := s.cli.ContainerCreate(ctx, cfg, host, netCfg, nil, name)
	if err != nil {
		return 0, fmt.Errorf("create one-off container: %w", err)
	}
	id := created.ID
	if opts.Detach {
		if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
			s.removeContainer(id)
			return 0, fmt.Errorf("start one-off container: %w", err)
		}
		fmt.Fprintf(opts.Stdout, "-----> Started %s (v%d): %q\n", name, rel.Version, opts.Args)
		return 0, nil
	}
	defer s.removeContainer(id)

	att, err := s.cli.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		return 0, fmt.Errorf("attach one-off container: %w", err)
	}
	defer att.Close()
	waitC, errC := s.cli.ContainerWait(ctx, id, container.WaitConditionNextExit)
	if err := s.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return 0, fmt.Errorf("start one-off container: %w", err)
	}
	if t := opts.TTY; t != nil {
		s.resize(ctx, id, t.Width, t.Height)
		go func() {
			for size := range t.Resize {
				s.resize(ctx, id, size[0], size[1])
			}
		}()
	}
	go func() {
		if opts.Stdin != nil {
			_, _ = io.Copy(att.Conn, opts.Stdin)
		}
		if !cfg.Tty {
			_ = att.CloseWrite() // end of input reaches the command
		}
		// A terminal's input does not end: closing it would hang up the
		// command. The container ends with the command, or when the
		// session does (ctx).
	}()
	outDone := make(chan error, 1)
	go func() {
		var err error
		if cfg.Tty {
			_, err = io.Copy(opts.Stdout, att.Reader)
		} else {
			_, err = stdcopy.StdCopy(opts.Stdout, opts.Stderr, att.Reader)
		}
		outDone <- err
	}()
	select {
	case res := <-waitC:
		// Let the last output through before answering.
		select {
		case <-outDone:
		case <-time.After(2 * time.Second):
		}
		if res.Error != nil {
			return 0, fmt.Errorf("one-off container: %s", res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-errC:
		return 0, fmt.Errorf("wait for one-off container: %w", err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *Swarm) resize(ctx context.Context, id string, w, h int) {
	if w <= 0 || h <= 0 {
		return
	}
	if err := s.cli.ContainerResize(ctx, id, container.ResizeOptions{Width: uint(w), Height: uint(h)}); err != nil {
		s.log.Debug("resize one-off terminal", "err", err)
	}
}

// removeContainer removes a one-off container, even after ctx ended.
func (s *Swarm) removeContainer(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		s.log.Warn("remove one-off container", "container", id, "err", err)
	}
}
