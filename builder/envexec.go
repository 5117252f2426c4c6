package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"paas/internal/paas"
)

// EnvWrapper appends the env wrapper (paas.EnvExecPath, paasd's own static
// binary) to release images and makes it their entrypoint, in front of the
// image's own entrypoint: every task, whichever way the image was made
// (Dockerfile, even FROM scratch; buildpacks; a prebuilt image), then reads
// its config from a file instead of its container's environment.
//
// The image is changed in the registry, not at build time, so the one place
// that knows an image's entrypoint and command is its config there (as
// Docker reads it when it starts a task), and images of releases made
// before the wrapper are wrapped when they are next rolled out.
type EnvWrapper struct {
	imp    *Importer
	binary string

	once  sync.Once
	layer v1.Layer
	err   error
}

// NewEnvWrapper returns a wrapper that copies binary (a static paasd) into
// images, through imp's registry login.
func NewEnvWrapper(imp *Importer, binary string) *EnvWrapper {
	return &EnvWrapper{imp: imp, binary: binary}
}

// wrapperLayer is the layer holding the binary. Its bytes depend only on the
// binary (fixed times and owners), so every image shares one blob.
func (w *EnvWrapper) wrapperLayer() (v1.Layer, error) {
	w.once.Do(func() {
		if err := checkStatic(w.binary); err != nil {
			w.err = fmt.Errorf("env wrapper: %w", err)
			return
		}
		bin, err := os.ReadFile(w.binary)
		if err != nil {
			w.err = fmt.Errorf("env wrapper: %w", err)
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		epoch := time.Unix(0, 0)
		dir := path.Dir(paas.EnvExecPath)[1:]
		err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: paas.EnvExecPath[1:], Mode: 0o755, Size: int64(len(bin)), ModTime: epoch, Format: tar.FormatPAX})
		}
		if err == nil {
			_, err = tw.Write(bin)
		}
		if err == nil {
			err = tw.Close()
		}
		if err != nil {
			w.err = fmt.Errorf("env wrapper layer: %w", err)
			return
		}
		data := buf.Bytes()
		w.layer, w.err = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithCompressionLevel(gzip.BestSpeed))
	})
	return w.layer, w.err
}

// Wrap returns img with the env wrapper, pushed to its repository as tag.
// An image that has it already is returned as it is.
func (w *EnvWrapper) Wrap(ctx context.Context, img paas.Image, tag string) (paas.Image, error) {
	if img.EnvExec {
		return img, nil
	}
	layer, err := w.wrapperLayer()
	if err != nil {
		return img, err
	}
	src, err := name.NewDigest(img.Ref())
	if err != nil {
		return img, fmt.Errorf("image reference %s: %w", img.Ref(), err)
	}
	dst, err := name.ParseReference(img.Repository + ":" + tag)
	if err != nil {
		return img, fmt.Errorf("image reference %s: %w", img.Repository, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(w.imp.keychain), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})}
	base, err := remote.Image(src, opts...)
	if err != nil {
		return img, fmt.Errorf("fetch image %s: %w", src, err)
	}
	wrapped, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{CreatedBy: "paas: env wrapper " + paas.EnvExecPath, Created: v1.Time{Time: time.Unix(0, 0)}}})
	if err != nil {
		return img, fmt.Errorf("add the env wrapper to %s: %w", src, err)
	}
	// The appended image's config (its layers' diff IDs and history
	// already include the wrapper's), with the wrapper in front of the
	// entrypoint: Docker runs ENTRYPOINT + CMD (or the service's args), the
	// wrapper execs what follows its "--".
	cfg, err := wrapped.ConfigFile()
	if err != nil {
		return img, fmt.Errorf("read image config of %s: %w", src, err)
	}
	cfg = cfg.DeepCopy()
	cfg.Config.Entrypoint = append(paas.EnvExecCommand(), cfg.Config.Entrypoint...)
	wrapped, err = mutate.ConfigFile(wrapped, cfg)
	if err != nil {
		return img, fmt.Errorf("add the env wrapper to %s: %w", src, err)
	}
	if err := remote.Write(dst, wrapped, opts...); err != nil {
		return img, fmt.Errorf("push image %s: %w", dst, err)
	}
	digest, err := wrapped.Digest()
	if err != nil {
		return img, err
	}
	out := img
	out.Digest, out.EnvExec = digest.String(), true
	return out, nil
}
