package main

// Commands for the integrity scenarios: a push that paasd dies in the middle
// of, and a check that what serves, the branch, the builds and the audit log
// agree afterwards.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	scriptCmds["kill-at"] = cmdKillAt
	scriptCmds["agree"] = cmdAgree
}

// scriptEnv is the environment the script's exec commands get.
func scriptEnv(ts *testscript.TestScript) []string {
	env := os.Environ()
	for _, k := range []string{"HOME", "PATH", "GIT_SSH_COMMAND", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
		"SSHCONFIG", "SSHDIR", "HTTP_PORT", "HTTPS_PORT", "SSH_PORT", "PAAS_NAME", "DATA_DIR", "REGISTRY"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}

// kill-at [-delay SECONDS] PATTERN PROG ARGS...: run PROG (in $WORK); when a
// line of its output matches PATTERN, wait the delay and kill paasd with
// SIGKILL. PROG's output goes to stdout, then "exit N". Fails when the
// pattern never showed.
func cmdKillAt(ts *testscript.TestScript, neg bool, args []string) {
	delay := time.Duration(0)
	if len(args) > 2 && args[0] == "-delay" {
		secs, err := strconv.ParseFloat(args[1], 64)
		ts.Check(err)
		delay, args = time.Duration(secs*float64(time.Second)), args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: kill-at [-delay SECONDS] PATTERN PROG ARGS...")
	}
	re, err := regexp.Compile(args[0])
	ts.Check(err)
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Dir, cmd.Env = ts.MkAbs("."), scriptEnv(ts)
	r, w, err := os.Pipe()
	ts.Check(err)
	cmd.Stdout, cmd.Stderr = w, w
	ts.Check(cmd.Start())
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var out strings.Builder
	killed := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if !killed && re.MatchString(line) {
			killed = true
			time.Sleep(delay)
			in := installations.get(ts.Getenv("WORK"))
			if in.cmd == nil {
				ts.Fatalf("paasd is not running")
			}
			syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
			in.cmd.Wait()
			in.cmd = nil
		}
	}
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		err = <-exited
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	fmt.Fprintf(ts.Stdout(), "%sexit %d\n", out.String(), code)
	if !killed {
		ts.Fatalf("%q never appeared in the output of %s:\n%s", args[0], strings.Join(args[1:], " "), out.String())
	}
}

// agree APP: wait (up to 90 s) until no build of APP is running, then check
// that the current release is the commit the deploy branch holds, and that
// the audit log has one deploy event per push build, with its result. Prints
// "branch SHA", "builds: N succeeded, M failed".
func cmdAgree(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: agree APP")
	}
	app := args[0]
	ssh := func(args ...string) []byte {
		cmd := exec.Command("ssh", append([]string{"-F", ts.Getenv("SSHCONFIG"), "paas"}, args...)...)
		cmd.Env = scriptEnv(ts)
		out, err := cmd.Output()
		if err != nil {
			ts.Fatalf("ssh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	var builds []struct {
		ID     int    `json:"id"`
		Status string `json:"status"`
		Kind   string `json:"kind"`
		Commit string `json:"commit"`
		Error  string `json:"error"`
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ts.Check(json.Unmarshal(ssh("builds:list", app, "--format", "json"), &builds))
		running := false
		for _, b := range builds {
			running = running || b.Status == "running"
		}
		if !running {
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("a build of %s is still running after 90s: %+v", app, builds)
		}
	}
	branch, err := exec.Command("git", "--git-dir="+filepath.Join(ts.Getenv("DATA_DIR"), "repos", app+".git"), "rev-parse", "refs/heads/main").Output()
	ts.Check(err)
	head := strings.TrimSpace(string(branch))
	var releases []struct {
		Version int    `json:"version"`
		Current bool   `json:"current"`
		Commit  string `json:"commit"`
	}
	ts.Check(json.Unmarshal(ssh("releases", app, "--format", "json"), &releases))
	current := ""
	for _, r := range releases {
		if r.Current {
			current = r.Commit
		}
	}
	if current != head {
		ts.Fatalf("%s serves commit %q but its branch holds %s", app, current, head)
	}
	var events []struct {
		Action string `json:"action"`
		Result string `json:"result"`
		Detail string `json:"detail"`
	}
	ts.Check(json.Unmarshal(ssh("events", "-n", "1000", "--format", "json", app), &events))
	okDeploys, failedDeploys := 0, 0
	for _, e := range events {
		if e.Action != "deploy" {
			continue
		}
		if e.Result == "ok" {
			okDeploys++
		} else {
			failedDeploys++
		}
	}
	succeeded, failed := 0, 0
	for _, b := range builds {
		if b.Kind != "push" {
			continue
		}
		if b.Status == "succeeded" {
			succeeded++
		} else {
			failed++
		}
	}
	if okDeploys != succeeded || failedDeploys != failed {
		ts.Fatalf("builds: %d push builds succeeded, %d failed; audit log: %d deploys ok, %d failed\nbuilds: %+v\nevents: %+v",
			succeeded, failed, okDeploys, failedDeploys, builds, events)
	}
	fmt.Fprintf(ts.Stdout(), "branch %s\nbuilds: %d succeeded, %d failed\n", head, succeeded, failed)
}
