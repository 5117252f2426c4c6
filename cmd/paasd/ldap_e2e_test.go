package main

// Script commands for the LDAP scenarios: a real slapd (Debian's), started
// from the scenario's work dir on loopback ports, edited with the real
// ldapmodify, and paasd restarted against it.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"paas/internal/directory/slapdtest"
)

var directories = map[string]*slapdtest.Server{} // by $WORK

func init() {
	scriptCmds["slapd-start"] = slapdStart
	scriptCmds["slapd-stop"] = func(ts *testscript.TestScript, neg bool, args []string) {
		directories[ts.Getenv("WORK")].Stop()
	}
	scriptCmds["ldap-user"] = ldapUser
	scriptCmds["ldap-modify"] = ldapModify
	scriptCmds["paasd-ldap"] = paasdLDAP
	scriptCmds["ldap-blackhole"] = ldapBlackhole
	scriptCmds["stopwatch"] = stopwatch
}

var (
	blackholes  = map[string]net.Listener{} // by $WORK
	stopwatches = map[string]time.Time{}    // by $WORK
)

// ldap-blackhole start|stop: while slapd is stopped, listen on its port and
// never answer: a directory that is dead but still accepts connections.
func ldapBlackhole(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	if len(args) != 1 {
		ts.Fatalf("usage: ldap-blackhole start|stop")
	}
	switch args[0] {
	case "start":
		l, err := net.Listen("tcp", strings.TrimPrefix(directoryOf(ts).URL, "ldap://"))
		ts.Check(err)
		blackholes[work] = l
		go func() {
			var conns []net.Conn
			for {
				c, err := l.Accept()
				if err != nil {
					for _, c := range conns {
						c.Close()
					}
					return
				}
				conns = append(conns, c)
			}
		}()
		ts.Defer(func() { l.Close() })
	case "stop":
		if l := blackholes[work]; l != nil {
			l.Close()
			delete(blackholes, work)
		}
	default:
		ts.Fatalf("usage: ldap-blackhole start|stop")
	}
}

// stopwatch start | stopwatch max SECONDS: fail when more than SECONDS
// passed since start (nothing may hang on a dead directory).
func stopwatch(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	switch {
	case len(args) == 1 && args[0] == "start":
		stopwatches[work] = time.Now()
	case len(args) == 2 && args[0] == "max":
		limit, err := time.ParseDuration(args[1] + "s")
		ts.Check(err)
		if d := time.Since(stopwatches[work]); d > limit {
			ts.Fatalf("took %v, more than %v", d.Round(time.Millisecond), limit)
		} else {
			fmt.Fprintf(ts.Stdout(), "took %v\n", d.Round(time.Millisecond))
		}
	default:
		ts.Fatalf("usage: stopwatch start | stopwatch max SECONDS")
	}
}

func directoryOf(ts *testscript.TestScript) *slapdtest.Server {
	d := directories[ts.Getenv("WORK")]
	if d == nil {
		ts.Fatalf("no slapd: run slapd-start first")
	}
	return d
}

// slapd-start: start the scenario's directory, or start it again after
// slapd-stop. A missing slapd fails the scenario (scripts/install.sh --deps
// installs it).
func slapdStart(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	if d := directories[work]; d != nil {
		ts.Check(d.Restart())
		return
	}
	d, err := slapdtest.Start(filepath.Join(work, ".slapd"))
	ts.Check(err)
	directories[work] = d
	ts.Defer(func() {
		d.Stop()
		delete(directories, work)
	})
	ts.Setenv("LDAP_URL", d.URL)
	ts.Setenv("LDAP_PEOPLE", slapdtest.PeopleDN)
	ts.Setenv("LDAP_GROUPS", slapdtest.GroupsDN)
}

// ldap-user NAME: make an SSH key for NAME, a `Host paas-NAME` entry using it,
// and a directory entry holding it.
func ldapUser(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: ldap-user NAME")
	}
	name := args[0]
	sshDir := ts.Getenv("SSHDIR")
	keyFile := filepath.Join(sshDir, name)
	if _, err := os.Stat(keyFile); err != nil {
		ts.Check(runQuiet("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@laptop", "-f", keyFile))
		in := installations.get(ts.Getenv("WORK"))
		cfg, err := os.OpenFile(ts.Getenv("SSHCONFIG"), os.O_APPEND|os.O_WRONLY, 0)
		ts.Check(err)
		fmt.Fprintf(cfg, "Host paas-%s\n  HostName 127.0.0.1\n  Port %d\n  User git\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n  BatchMode yes\n\n",
			name, in.sshPort, keyFile, filepath.Join(sshDir, "known_hosts"))
		ts.Check(cfg.Close())
	}
	pub, err := os.ReadFile(keyFile + ".pub")
	ts.Check(err)
	ts.Check(directoryOf(ts).Modify(slapdtest.UserLDIF(name, strings.TrimSpace(string(pub)))))
}

// ldap-modify FILE: apply LDIF change records with ldapmodify.
func ldapModify(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: ldap-modify FILE")
	}
	err := directoryOf(ts).Modify(ts.ReadFile(args[0]))
	if neg {
		if err == nil {
			ts.Fatalf("ldap-modify succeeded")
		}
		return
	}
	ts.Check(err)
}

// paasd-ldap [TTL] [oidc]: restart paasd reading keys from the scenario's
// directory, with the bind password in a file and a cache TTL (default 5s);
// with oidc, the dashboard signs in at the scenario's OpenID provider
// (oidc-provider first), its client secret in a file.
func paasdLDAP(ts *testscript.TestScript, neg bool, args []string) {
	d := directoryOf(ts)
	ttl, withOIDC := "5s", false
	for _, a := range args {
		if a == "oidc" {
			withOIDC = true
		} else {
			ttl = a
		}
	}
	in := installations.get(ts.Getenv("WORK"))
	pwFile := filepath.Join(ts.Getenv("WORK"), ".ldap-password")
	ts.Check(os.WriteFile(pwFile, []byte(slapdtest.ServicePassword+"\n"), 0o600))
	in.stop()
	routerUp := strings.Count(in.log(), `"msg":"router running"`)
	in.extraArgs = []string{
		"--ldap-url", d.URL, "--ldap-starttls", "--ldap-ca-file", d.CAFile,
		"--ldap-bind-dn", slapdtest.ServiceDN, "--ldap-bind-password-file", pwFile,
		"--ldap-base-dn", slapdtest.PeopleDN, "--ldap-group-base-dn", slapdtest.GroupsDN,
		"--ldap-admin-group", "cn=paas-admins," + slapdtest.GroupsDN,
		"--ldap-cache-ttl", ttl, "--ldap-timeout", "2s",
	}
	if withOIDC {
		in.extraArgs = append(in.extraArgs, "--oidc-issuer", providerOf(ts).Issuer, "--oidc-client-id", "paas",
			"--oidc-client-secret-file", filepath.Join(ts.Getenv("WORK"), ".oidc-secret"))
	}
	ts.Check(in.start())
	// start() returns once a router answers, which may still be the one the
	// previous paasd left; a deploy started before this paasd has finished
	// its own start-up (router, reconcile) is retired by it. Wait for that.
	for deadline := time.Now().Add(90 * time.Second); strings.Count(in.log(), `"msg":"router running"`) <= routerUp; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.Fatalf("paasd did not report its router running")
		}
	}
}
