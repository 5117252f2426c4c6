package builder

import (
	"archive/tar"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/docker/api/types/build"

	"paas/internal/output"
	"paas/internal/paas"
)

// SelfBinaryPath is where BuildSelfImage puts the binary inside the image.
const SelfBinaryPath = "/paasd"

// BuildSelfImage builds a FROM scratch image holding the static binary at
// binaryPath as /paasd, with ENTRYPOINT ["/paasd"] and CMD cmd, and tags it
// ref (e.g. the router image, from paasd's own executable). When push is the
// registry ref names, it pushes ref there with its login and returns ref's
// repository@digest; with a nil push it returns ref, which then only exists
// on this daemon (pick a tag that changes with the binary, or a service using
// it will not notice a new binary).
func BuildSelfImage(ctx context.Context, cli DockerAPI, binaryPath, ref string, cmd []string, push *paas.ImageRegistry, out io.Writer) (string, error) {
	if out == nil {
		out = io.Discard
	}
	if err := checkStatic(binaryPath); err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	bin, err := os.Open(binaryPath)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	defer bin.Close()
	fi, err := bin.Stat()
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	cmdJSON, err := json.Marshal(cmd)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	if cmd == nil {
		cmdJSON = []byte("[]")
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY paasd %s\nENTRYPOINT [%q]\nCMD %s\n", SelfBinaryPath, SelfBinaryPath, cmdJSON)

	build1 := func() error {
		if _, err := bin.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("build image %s: %w", ref, err)
		}
		pr, pw := io.Pipe()
		written := make(chan struct{})
		defer func() { <-written }() // bin is read again by a retry
		go func() {
			defer close(written)
			tw := tar.NewWriter(pw)
			err := writeFile(tw, DockerfileName, 0o644, int64(len(dockerfile)), strings.NewReader(dockerfile))
			if err == nil {
				err = writeFile(tw, "paasd", 0o755, fi.Size(), bin)
			}
			if err == nil {
				err = tw.Close()
			}
			pw.CloseWithError(err)
		}()
		defer pr.Close()

		output.Step(out, "Building image %s", ref)
		resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
			Tags:        []string{ref},
			Dockerfile:  DockerfileName,
			Remove:      true,
			ForceRemove: true,
			Version:     build.BuilderV1,
		})
		if err != nil {
			return fmt.Errorf("build image %s: %w", ref, err)
		}
		defer resp.Body.Close()
		if _, err := readStream(resp.Body, out, false); err != nil {
			return fmt.Errorf("build image %s: %w", ref, err)
		}
		return nil
	}
	err = build1()
	if err != nil && strings.Contains(err.Error(), "unable to find image") && ctx.Err() == nil {
		// A cached layer of an image deleted meanwhile: build again.
		output.Step(out, "A cached layer was deleted during the build; building again")
		err = build1()
	}
	if err != nil {
		return "", err
	}
	if push == nil {
		return ref, nil
	}
	output.Step(out, "Pushing image %s", ref)
	digest, err := pushImage(ctx, cli, ref, DockerAuth(*push), out)
	if err != nil {
		return "", err
	}
	return repository(ref) + "@" + digest, nil
}

func writeFile(tw *tar.Writer, name string, mode, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed while being archived", name)
	}
	return err
}

// checkStatic refuses a binary that needs a dynamic loader: a FROM scratch
// image has none.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("binary is dynamically linked; build it with CGO_ENABLED=0")
		}
	}
	return nil
}

// repository strips the tag or digest from an image reference.
func repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if i := strings.LastIndexByte(ref, ':'); i > slash {
		ref = ref[:i]
	}
	return ref
}
