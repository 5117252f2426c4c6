package slapdtest

import (
	"os/exec"
	"strings"
	"testing"
)

func TestServer(t *testing.T) {
	Require(t)
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Modify(UserLDIF("alice", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTest alice@x") + GroupLDIF("team", "alice")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ldapsearch", "-x", "-LLL", "-H", s.URL, "-D", ServiceDN, "-w", ServicePassword, "-b", PeopleDN, "(uid=alice)", "memberOf", "sshPublicKey").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "memberOf: cn=team,ou=groups,dc=example,dc=com") {
		t.Fatalf("ldapsearch: %v\n%s", err, out)
	}
	s.Stop()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// anonymous reads nothing
	out, _ = exec.Command("ldapsearch", "-x", "-LLL", "-H", s.URL, "-b", PeopleDN, "(uid=alice)").CombinedOutput()
	if strings.Contains(string(out), "alice") {
		t.Fatalf("anonymous read the directory:\n%s", out)
	}
}
