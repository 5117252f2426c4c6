package main

// Script commands for the LDAP scenarios: a real slapd (Debian's), started
// from the scenario's work dir on loopback ports, edited with the real
// ldapmodify, and paasd restarted against it.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
		in := installations[ts.Getenv("WORK")]
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

// paasd-ldap [TTL]: restart paasd reading keys from the scenario's directory,
// with the bind password in a file and a cache TTL (default 5s).
func paasdLDAP(ts *testscript.TestScript, neg bool, args []string) {
	d := directoryOf(ts)
	ttl := "5s"
	if len(args) > 0 {
		ttl = args[0]
	}
	in := installations[ts.Getenv("WORK")]
	pwFile := filepath.Join(ts.Getenv("WORK"), ".ldap-password")
	ts.Check(os.WriteFile(pwFile, []byte(slapdtest.ServicePassword+"\n"), 0o600))
	in.stop()
	in.extraArgs = []string{
		"--ldap-url", d.URL, "--ldap-starttls", "--ldap-ca-file", d.CAFile,
		"--ldap-bind-dn", slapdtest.ServiceDN, "--ldap-bind-password-file", pwFile,
		"--ldap-base-dn", slapdtest.PeopleDN, "--ldap-group-base-dn", slapdtest.GroupsDN,
		"--ldap-admin-group", "cn=paas-admins," + slapdtest.GroupsDN,
		"--ldap-cache-ttl", ttl, "--ldap-timeout", "2s",
	}
	ts.Check(in.start())
}
