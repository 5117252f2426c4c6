package main

// Script commands for the TLS scenarios: test certificates, a real ACME
// server (Let's Encrypt's Pebble, built from its Go module) on loopback, and
// polling with the real curl.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/loopback"
)

func init() {
	scriptCmds["gen-cert"] = cmdGenCert
	scriptCmds["pebble-start"] = cmdPebbleStart
	scriptCmds["curl-wait"] = cmdCurlWait
	scriptCmds["file-mode"] = cmdFileMode
	scriptCmds["concat"] = cmdConcat
	scriptCmds["exec-wait"] = cmdExecWait
	scriptCmds["paasd-restart"] = cmdPaasdRestart
}

// exec-wait SECONDS TEXT PROG ARGS...: run PROG (in $WORK) until its output
// contains TEXT, for at most SECONDS.
func cmdExecWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: exec-wait SECONDS TEXT PROG ARGS...")
	}
	secs, err := strconv.ParseFloat(args[0], 64)
	ts.Check(err)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for {
		cmd := exec.Command(args[2], args[3:]...)
		cmd.Dir, cmd.Env = ts.MkAbs("."), scriptEnv(ts)
		out, _ := cmd.CombinedOutput()
		if bytes.Contains(out, []byte(args[1])) != neg {
			ts.Stdout().Write(out)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s: after %ss the output is still:\n%s", strings.Join(args[2:], " "), args[0], out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// paasd-restart ARGS...: restart paasd with ARGS added to its flags.
func cmdPaasdRestart(ts *testscript.TestScript, neg bool, args []string) {
	in := installations.get(ts.Getenv("WORK"))
	in.stop()
	in.extraArgs = append(in.extraArgs, args...)
	ts.Check(in.start())
}

// concat OUT IN...: write the files IN, one after the other, to OUT.
func cmdConcat(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: concat OUT IN...")
	}
	var b bytes.Buffer
	for _, in := range args[1:] {
		data, err := os.ReadFile(ts.MkAbs(in))
		ts.Check(err)
		b.Write(data)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b.Bytes(), 0o600))
}

// removeConfigs removes the installation's Swarm config objects (routes).
func removeConfigs(ctx context.Context, cli *client.Client, name string) {
	cfgs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", "paas.installation="+name))})
	if err != nil {
		return
	}
	for _, c := range cfgs {
		cli.ConfigRemove(ctx, c.ID)
	}
}

// gen-cert [-expired] DIR NAME...: a fresh CA (DIR/ca.pem) and a leaf for the
// names signed by it: DIR/cert.pem, DIR/key.pem and both in DIR/bundle.pem.
func cmdGenCert(ts *testscript.TestScript, neg bool, args []string) {
	expired := len(args) > 0 && args[0] == "-expired"
	if expired {
		args = args[1:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: gen-cert [-expired] DIR NAME...")
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	notAfter := time.Now().Add(30 * 24 * time.Hour)
	if expired {
		notAfter = time.Now().Add(-time.Hour)
	}
	caPEM, leafPEM, keyPEM, err := genCert(args[1:], notAfter)
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "cert.pem"), leafPEM, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))
	ts.Check(os.WriteFile(filepath.Join(dir, "bundle.pem"), append(append([]byte{}, leafPEM...), keyPEM...), 0o600))
}

func genCert(names []string, notAfter time.Time) (caPEM, leafPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "paas test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-24 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, n)
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// curl-wait SECONDS TEXT CURL-ARGS...: run the real curl until its output
// contains TEXT, for at most SECONDS; prints the last output. With !, wait
// until the output no longer contains TEXT.
func cmdCurlWait(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: curl-wait SECONDS TEXT CURL-ARGS...")
	}
	secs, err := strconv.ParseFloat(args[0], 64)
	ts.Check(err)
	start := time.Now()
	deadline := start.Add(time.Duration(secs * float64(time.Second)))
	var out []byte
	for {
		cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "5"}, args[2:]...)...)
		cmd.Dir = ts.MkAbs(".")
		out, _ = cmd.CombinedOutput()
		if bytes.Contains(out, []byte(args[1])) != neg {
			ts.Logf("curl-wait: condition met after %s", time.Since(start).Round(time.Millisecond))
			ts.Stdout().Write(out)
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("curl %s: after %ss the output is still:\n%s", strings.Join(args[2:], " "), args[0], out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// file-mode PATH: print the permission bits of PATH in octal.
func cmdFileMode(ts *testscript.TestScript, neg bool, args []string) {
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%04o\n", fi.Mode().Perm())
}

var (
	pebbleOnce sync.Once
	pebbleDir  string
	pebbleErr  error
)

// buildPebble builds Pebble and its DNS test server from the module version
// go.mod pins (a tool dependency), once per test run.
func buildPebble() (string, error) {
	pebbleOnce.Do(func() {
		pebbleDir, pebbleErr = os.MkdirTemp("", "paas-pebble")
		if pebbleErr != nil {
			return
		}
		for _, pkg := range []string{"github.com/letsencrypt/pebble/v2/cmd/pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"} {
			cmd := exec.Command("go", "build", "-o", pebbleDir, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				pebbleErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	return pebbleDir, pebbleErr
}

// pebble-start: run Pebble (ACME) and pebble-challtestsrv (its DNS server,
// answering 127.0.0.1 for every name) on loopback, then restart paasd with
// them as its ACME server. $WORK/pebble-root.pem is then the root Pebble
// issues under.
func cmdPebbleStart(ts *testscript.TestScript, neg bool, args []string) {
	in := installations.get(ts.Getenv("WORK"))
	bin, err := buildPebble()
	ts.Check(err)
	dir := ts.MkAbs(".pebble")
	ts.Check(os.MkdirAll(dir, 0o700))
	port := func() int {
		p, err := loopback.FreePort() // never the same twice
		ts.Check(err)
		return p
	}
	acmePort, mgmtPort, dnsPort, dnsMgmtPort, tlsPort := port(), port(), port(), port(), port()

	// Pebble's own HTTPS certificate, for 127.0.0.1.
	caPEM, certPEM, keyPEM, err := genCert([]string{"127.0.0.1", "localhost"}, time.Now().Add(24*time.Hour))
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "ca.pem"), caPEM, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", acmePort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate":                    filepath.Join(dir, "cert.pem"),
		"privateKey":                     filepath.Join(dir, "key.pem"),
		"httpPort":                       in.httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"domainBlocklist":                []string{"blocked-domain.example"},
	}}
	data, _ := json.Marshal(cfg)
	ts.Check(os.WriteFile(filepath.Join(dir, "pebble-config.json"), data, 0o644))

	logFile, err := os.Create(filepath.Join(dir, "pebble.log"))
	ts.Check(err)
	start := func(name string, env []string, args ...string) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		ts.Check(cmd.Start())
		ts.Defer(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
	}
	start("pebble-challtestsrv", nil,
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort),
		"-management", fmt.Sprintf("127.0.0.1:%d", dnsMgmtPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	start("pebble", []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", filepath.Join(dir, "pebble-config.json"),
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort))

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	dirURL := fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	var root []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			ts.Fatalf("pebble did not come up; log:\n%s", log)
		}
		resp, err := hc.Get(dirURL)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp, err = hc.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort)); err != nil {
			continue
		}
		root, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			break
		}
	}
	ts.Check(os.WriteFile(ts.MkAbs("pebble-root.pem"), root, 0o644))
	in.stop()
	in.extraArgs = []string{"--acme-directory", dirURL, "--acme-ca-file", filepath.Join(dir, "ca.pem"), "--acme-email", "ops@example.com"}
	ts.Check(in.start())
}
