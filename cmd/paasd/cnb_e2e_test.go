package main

// Script commands for the buildpacks and git:from-image scenarios.

import (
	"archive/tar"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/builder"
	"paas/internal/registry"
)

func init() {
	// require-builder: fail with the fix when the air-gapped builder is missing.
	scriptCmds["require-builder"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if err := exec.Command("docker", "image", "inspect", builder.DefaultCNBBuilder).Run(); err != nil {
			ts.Fatalf("the air-gapped CNB builder %s is missing: run scripts/builder/build.sh (scripts/install.sh --deps does)", builder.DefaultCNBBuilder)
		}
	}
	// oci-registry USER PASSWORD: start a second registry on loopback that
	// wants these credentials; sets $OCIREG to its host:port.
	scriptCmds["oci-registry"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: oci-registry USER PASSWORD")
		}
		reg, err := registry.New(ts.MkAbs(".oci-registry"), slog.New(slog.DiscardHandler))
		ts.Check(err)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		user, pass := args[0], args[1]
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			reg.ServeHTTP(w, r)
		})}
		go srv.Serve(l)
		ts.Defer(func() { srv.Close() })
		ts.Setenv("OCIREG", l.Addr().String())
	}
	// oci-push BINARY REF USER PASSWORD: push an image holding the static
	// BINARY as /app (its entrypoint) to REF.
	scriptCmds["oci-push"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 4 {
			ts.Fatalf("usage: oci-push BINARY REF USER PASSWORD")
		}
		bin, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		ts.Check(tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}))
		_, err = tw.Write(bin)
		ts.Check(err)
		ts.Check(tw.Close())
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
		ts.Check(err)
		img, err := mutate.AppendLayers(empty.Image, layer)
		ts.Check(err)
		cfg, err := img.ConfigFile()
		ts.Check(err)
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", "amd64"
		cfg.Config.Entrypoint = []string{"/app"}
		img, err = mutate.ConfigFile(img, cfg)
		ts.Check(err)
		ref, err := name.ParseReference(args[1])
		ts.Check(err)
		ts.Check(remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: args[2], Password: args[3]})))
	}
	// volumes PREFIX: list the Docker volumes whose name starts with PREFIX
	// ("no volumes" when there is none).
	scriptCmds["volumes"] = func(ts *testscript.TestScript, neg bool, args []string) {
		out, err := exec.Command("docker", "volume", "ls", "-q", "--filter", "name="+args[0]).Output()
		ts.Check(err)
		n := 0
		for _, v := range strings.Fields(string(out)) {
			if strings.HasPrefix(v, args[0]) {
				io.WriteString(ts.Stdout(), filepath.Base(v)+"\n")
				n++
			}
		}
		if n == 0 {
			io.WriteString(ts.Stdout(), "no volumes\n")
		}
	}
}
