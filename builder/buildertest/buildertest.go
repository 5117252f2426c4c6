// Package buildertest gives tests what they need to build and run images on
// the real Docker daemon: a client, a throwaway loopback registry and a tiny
// app (a static Go HTTP server in a FROM scratch image) to build.
package buildertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"paas/internal/paas"
	"paas/internal/registry"
)

// Missing ends a test that lacks something it needs (a daemon, an image): it
// fails when CI=true, where scripts/install.sh --deps provides everything,
// and is skipped elsewhere.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Docker returns a client of the local daemon; see Missing.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx)
	}
	if err != nil {
		Missing(t, "no docker daemon: "+err.Error())
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// SwarmManager is Docker(t) for a daemon that must be a Swarm manager; see
// Missing.
func SwarmManager(t testing.TB) *client.Client {
	t.Helper()
	cli := Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := cli.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		Missing(t, fmt.Sprintf("docker is not a swarm manager (state %q)", info.Swarm.LocalNodeState))
	}
	return cli
}

// Registry starts an empty registry on 127.0.0.1 for the test, as paasd
// runs its own: TLS with a CA of the test process (which this process trusts,
// as paasd trusts its own) and a login. The daemon treats 127.0.0.1 as an
// insecure registry and does not check the certificate.
func Registry(t testing.TB) paas.ImageRegistry {
	t.Helper()
	certs, err := testCertificates()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	login, err := registry.LoadLogin(filepath.Join(base, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Dir: filepath.Join(base, "storage"), HTPasswd: login.HTPasswd()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(reg)
	srv.TLS = certs.TLSConfig()
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		reg.Close()
	})
	// pack mounts the CA file into its build containers.
	caFile := filepath.Join(base, "ca.crt")
	if err := os.WriteFile(caFile, certs.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	return paas.ImageRegistry{
		Prefix:   strings.TrimPrefix(srv.URL, "https://"),
		Username: login.User, Password: login.Password,
		CAFile: caFile,
	}
}

var (
	certsOnce sync.Once
	certs     *registry.Certificates
	certsErr  error
)

// testCertificates are the CA and the 127.0.0.1 certificate of every test
// registry of this process, which trusts the CA from then on.
func testCertificates() (*registry.Certificates, error) {
	certsOnce.Do(func() {
		var dir string
		dir, certsErr = os.MkdirTemp("", "paas-test-registry-tls-")
		if certsErr != nil {
			return
		}
		certs, certsErr = registry.LoadCertificates(dir, []string{"127.0.0.1"})
		os.RemoveAll(dir) // kept in memory; each registry writes its copy of the CA
		if certsErr == nil {
			certsErr = registry.TrustCA(certs.CA)
		}
	})
	return certs, certsErr
}

// RemoveImages removes, when the test ends, every image tagged in repository
// repo (e.g. "127.0.0.1:5001/stest-ab12/hello") on the daemon.
func RemoveImages(t testing.TB, cli *client.Client, repo string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		imgs, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", repo))})
		if err != nil {
			t.Logf("list images of %s: %v", repo, err)
			return
		}
		// By tag, and with no parent pruned: tests running beside this
		// one build the same layers (the same image IDs, from the build
		// cache), and removing those under them fails their builds
		// ("unknown parent image ID").
		for _, img := range imgs {
			for _, tag := range img.RepoTags {
				if !strings.HasPrefix(tag, repo+":") {
					continue
				}
				if _, err := cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true}); err != nil {
					t.Logf("remove image %s: %v", tag, err)
				}
			}
		}
	})
}

// helloSource is the test app: it logs a start line, exits 1 when CRASH=1 or
// with -crash, and otherwise answers every request with "hello $GREETING" on
// $PORT (or -port), stopping at once on SIGTERM.
const helloSource = `package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	flag.StringVar(&port, "port", port, "port to listen on")
	crash := flag.Bool("crash", false, "exit 1 at start, like CRASH=1")
	flag.Parse()
	fmt.Printf("hello-app starting on port %s greeting=%q args=%q\n", port, os.Getenv("GREETING"), flag.Args())
	if os.Getenv("CRASH") == "1" || *crash {
		fmt.Println("hello-app: crashing on purpose (CRASH=1)")
		os.Exit(1)
	}
	srv := &http.Server{Addr: ":" + port, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s\n", os.Getenv("GREETING"))
	})}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// HelloDockerfile builds the test app binary "hello" into a scratch image.
const HelloDockerfile = "FROM scratch\nCOPY hello /hello\nENTRYPOINT [\"/hello\"]\n"

// HelloBinary compiles the test app as a static binary and returns its path.
func HelloBinary(t testing.TB) string {
	t.Helper()
	return GoBinary(t, "hello", helloSource)
}

// GoBinary compiles source, a main package using only the standard library,
// as a static binary named name and returns its path.
func GoBinary(t testing.TB, name, source string) string {
	t.Helper()
	src := t.TempDir()
	write(t, filepath.Join(src, "go.mod"), "module "+name+"\n\ngo 1.22\n")
	write(t, filepath.Join(src, "main.go"), source)
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// HelloApp returns a build directory holding the test app binary and a
// Dockerfile that copies it into a scratch image.
func HelloApp(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	bin := HelloBinary(t)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "Dockerfile"), HelloDockerfile)
	return dir
}

func write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// goTool finds the go command the test runs under.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// Unique returns prefix-<random hex>, a name no other test run uses.
func Unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails
	return fmt.Sprintf("%s-%x", prefix, b)
}
