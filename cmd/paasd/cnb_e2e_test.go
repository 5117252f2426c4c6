package main

// Script commands for the buildpacks and git:from-image scenarios.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/crypto/bcrypt"

	"paas/builder"
	"paas/internal/daemon"
	"paas/internal/registry"
)

func init() {
	// require-builder: fail with the fix when the air-gapped builder is missing.
	scriptCmds["require-builder"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if err := exec.Command("docker", "image", "inspect", builder.DefaultCNBBuilder).Run(); err != nil {
			ts.Fatalf("the air-gapped CNB builder %s is missing: run scripts/builder/build.sh (scripts/install.sh --deps does)", builder.DefaultCNBBuilder)
		}
	}
	// oci-registry [-tls] USER PASSWORD: start a second registry (an
	// instance of the embedded one) on loopback that wants these
	// credentials; sets $OCIREG to its host:port. With -tls it serves HTTPS
	// with a CA of its own, whose PEM is $OCIREG_CA; otherwise plain HTTP.
	scriptCmds["oci-registry"] = func(ts *testscript.TestScript, neg bool, args []string) {
		useTLS := len(args) > 0 && args[0] == "-tls"
		if useTLS {
			args = args[1:]
		}
		if len(args) != 2 {
			ts.Fatalf("usage: oci-registry [-tls] USER PASSWORD")
		}
		dir := ts.MkAbs(".oci-registry")
		hash, err := bcrypt.GenerateFromPassword([]byte(args[1]), bcrypt.MinCost)
		ts.Check(err)
		ts.Check(os.MkdirAll(dir, 0o700))
		htpasswd := filepath.Join(dir, "htpasswd")
		ts.Check(os.WriteFile(htpasswd, []byte(args[0]+":"+string(hash)+"\n"), 0o600))
		reg, err := registry.New(registry.Options{Dir: filepath.Join(dir, "storage"), HTPasswd: htpasswd, Quiet: time.Millisecond})
		ts.Check(err)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		srv := &http.Server{Handler: reg}
		if useTLS {
			certs, err := registry.LoadCertificates(filepath.Join(dir, "tls"), []string{"127.0.0.1"})
			ts.Check(err)
			srv.TLSConfig = certs.TLSConfig()
			ts.Setenv("OCIREG_CA", certs.CAFile())
			go srv.ServeTLS(l, "", "")
		} else {
			go srv.Serve(l)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go reg.Run(ctx)
		ts.Defer(func() {
			cancel()
			srv.Close()
			reg.Close()
			// paasd wrote the CA for the local daemon.
			os.RemoveAll(filepath.Join(daemon.DefaultDockerCertsDir, l.Addr().String()))
		})
		ts.Setenv("OCIREG", l.Addr().String())
	}
	// oci-push BINARY REF USER PASSWORD [APPJSON]: push an image holding the
	// static BINARY as /app (its entrypoint), and the file APPJSON as
	// /app.json (in its working directory, the root), to REF (trusting
	// $OCIREG_CA if set).
	scriptCmds["oci-push"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 4 && len(args) != 5 {
			ts.Fatalf("usage: oci-push BINARY REF USER PASSWORD [APPJSON]")
		}
		bin, err := os.ReadFile(ts.MkAbs(args[0]))
		ts.Check(err)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		ts.Check(tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}))
		_, err = tw.Write(bin)
		ts.Check(err)
		if len(args) == 5 {
			appJSON, err := os.ReadFile(ts.MkAbs(args[4]))
			ts.Check(err)
			ts.Check(tw.WriteHeader(&tar.Header{Name: "app.json", Mode: 0o644, Size: int64(len(appJSON)), Typeflag: tar.TypeReg}))
			_, err = tw.Write(appJSON)
			ts.Check(err)
		}
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
		opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: args[2], Password: args[3]})}
		if ca := ts.Getenv("OCIREG_CA"); ca != "" {
			pem, err := os.ReadFile(ca)
			ts.Check(err)
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(pem)
			opts = append(opts, remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}))
		}
		ts.Check(remote.Write(ref, img, opts...))
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
