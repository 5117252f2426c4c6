package main

// Script commands for the Dokku conformance scenarios (dokku-*.txtar).

import (
	"archive/tar"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/loopback"
)

func init() {
	// git-daemon DIR: serve the repositories under DIR with git daemon on
	// 127.0.0.1 (git://, read-only); sets $GITD to git://127.0.0.1:PORT.
	scriptCmds["git-daemon"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: git-daemon DIR")
		}
		port, err := loopback.FreePort()
		ts.Check(err)
		dir := ts.MkAbs(args[0])
		cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), "--base-path="+dir, dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		ts.Check(cmd.Start())
		ts.Defer(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			cmd.Wait()
		})
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				ts.Fatalf("git daemon did not listen on %s", addr)
			}
		}
		ts.Setenv("GITD", "git://"+addr)
	}
	// serve-files DIR: serve DIR over HTTP on 127.0.0.1; sets $FILES to
	// http://127.0.0.1:PORT.
	scriptCmds["serve-files"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: serve-files DIR")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		ts.Check(err)
		srv := &http.Server{Handler: http.FileServer(http.Dir(ts.MkAbs(args[0]))), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(l)
		ts.Defer(func() { srv.Close() })
		ts.Setenv("FILES", "http://"+l.Addr().String())
	}
	// evil-tar OUT: a tar whose second entry climbs out of the dir.
	scriptCmds["evil-tar"] = func(ts *testscript.TestScript, neg bool, args []string) {
		f, err := os.Create(ts.MkAbs(args[0]))
		ts.Check(err)
		tw := tar.NewWriter(f)
		for _, name := range []string{"Dockerfile", "../escaped"} {
			body := "FROM scratch\n"
			ts.Check(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}))
			_, err := tw.Write([]byte(body))
			ts.Check(err)
		}
		ts.Check(tw.Close())
		ts.Check(f.Close())
	}
	// docker-build NAME DIR: build DIR into the local image NAME (only in
	// this Docker daemon; no registry has it), removed when the script ends.
	scriptCmds["docker-build"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: docker-build NAME DIR")
		}
		ts.Defer(func() { exec.Command("docker", "rmi", "-f", args[0]).Run() })
		out, err := exec.Command("docker", "build", "-q", "-t", args[0], ts.MkAbs(args[1])).CombinedOutput()
		if err != nil {
			ts.Fatalf("docker build: %v\n%s", err, out)
		}
	}
}
