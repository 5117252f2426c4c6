// Package slapdtest runs a throwaway OpenLDAP server (Debian's slapd) on
// loopback ports from a temporary directory, for the tests of the directory
// client and the end-to-end scenarios. It ships the openssh-lpk schema paas
// reads keys with, and edits the directory with the real ldapmodify.
package slapdtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"paas/internal/loopback"
)

// Schema is the openssh-lpk schema (sshPublicKey, ldapPublicKey).
//
//go:embed openssh-lpk.schema
var Schema []byte

// The directory every test server holds.
const (
	Suffix          = "dc=example,dc=com"
	RootDN          = "cn=admin,dc=example,dc=com"
	RootPassword    = "root-secret"
	ServiceDN       = "cn=paas,ou=services,dc=example,dc=com"
	ServicePassword = "service-secret"
	PeopleDN        = "ou=people,dc=example,dc=com"
	GroupsDN        = "ou=groups,dc=example,dc=com"
)

// Binaries the server needs (Debian's slapd and ldap-utils).
var Binaries = []string{"slapd", "slapadd", "ldapmodify"}

// Require fails the test when slapd or ldap-utils are missing and CI=true, and
// skips it otherwise: CI must never pass an LDAP test it did not run.
func Require(t testing.TB) {
	t.Helper()
	for _, b := range Binaries {
		if _, err := lookPath(b); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required (scripts/install.sh --deps installs slapd and ldap-utils): %v", b, err)
			}
			t.Skipf("%s not installed (scripts/install.sh --deps installs it)", b)
		}
	}
}

// lookPath finds b in PATH or /usr/sbin, where Debian puts slapd.
func lookPath(b string) (string, error) {
	if p, err := exec.LookPath(b); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", b)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found", b)
}

// Server is one running slapd.
type Server struct {
	Dir      string
	URL      string // ldap://127.0.0.1:PORT (StartTLS available)
	LDAPSURL string // ldaps://127.0.0.1:PORT
	CAFile   string // PEM of the CA that signed the server's certificate
	conf     string
	cmd      *exec.Cmd
	done     chan struct{}
	logFile  string
}

const base = `dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=paas,ou=services,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: paas
userPassword: service-secret
`

// Start creates a directory under dir (the base entries and the paas service
// account) and serves it on two free loopback ports, plain+StartTLS and LDAPS.
func Start(dir string) (*Server, error) {
	slapadd, err := lookPath("slapadd")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, conf: filepath.Join(dir, "slapd.conf"), logFile: filepath.Join(dir, "slapd.log")}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "openssh-lpk.schema"), Schema, 0o644); err != nil {
		return nil, err
	}
	s.CAFile = filepath.Join(dir, "ca.pem")
	if err := writeCerts(dir); err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.conf, []byte(config(dir)), 0o600); err != nil {
		return nil, err
	}
	add := exec.Command(slapadd, "-q", "-f", s.conf)
	add.Stdin = strings.NewReader(base)
	if out, err := add.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slapadd: %v: %s", err, out)
	}
	port, err := loopback.FreePort()
	if err != nil {
		return nil, err
	}
	tlsPort, err := loopback.FreePort()
	if err != nil {
		return nil, err
	}
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	s.LDAPSURL = fmt.Sprintf("ldaps://127.0.0.1:%d", tlsPort)
	return s, s.Restart()
}

func config(dir string) string {
	return fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
include %[1]s/openssh-lpk.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile %[1]s/ca.pem
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server-key.pem
database mdb
maxsize 10485760
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/data
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
overlay memberof
`, dir, Suffix, RootDN, RootPassword)
}

// Restart starts slapd again (after Stop) on the same ports and data.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("slapd already running")
	}
	slapd, err := lookPath("slapd")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// -d keeps slapd in the foreground, so it is this process's child to stop.
	cmd := exec.Command(slapd, "-f", s.conf, "-h", s.URL+"/ "+s.LDAPSURL+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	addr := strings.TrimPrefix(s.URL, "ldap://")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.done:
			s.cmd = nil
			log, _ := os.ReadFile(s.logFile)
			return fmt.Errorf("slapd exited at start: %s", log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
	}
	s.Stop()
	return errors.New("slapd did not listen within 10s")
}

// Stop stops slapd; the data stays for Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.cmd = nil
}

// Running reports whether slapd runs.
func (s *Server) Running() bool { return s.cmd != nil }

// Modify applies LDIF change records (changetype: add|modify|delete) with the
// real ldapmodify, bound as the directory's root.
func (s *Server) Modify(ldif string) error {
	ldapmodify, err := lookPath("ldapmodify")
	if err != nil {
		return err
	}
	cmd := exec.Command(ldapmodify, "-x", "-H", s.URL, "-D", RootDN, "-w", RootPassword)
	cmd.Stdin = strings.NewReader(ldif)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ldapmodify: %v: %s", err, out.String())
	}
	return nil
}

// UserLDIF is an add record for an inetOrgPerson with ldapPublicKey keys
// (each "type base64" as authorized_keys has it, comment dropped).
func UserLDIF(uid string, keys ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: uid=%s,%s\nchangetype: add\nobjectClass: inetOrgPerson\nobjectClass: ldapPublicKey\nuid: %s\ncn: %s\nsn: %s\n", uid, PeopleDN, uid, uid, uid)
	for _, k := range keys {
		f := strings.Fields(k)
		if len(f) >= 2 {
			k = f[0] + " " + f[1]
		}
		fmt.Fprintf(&b, "sshPublicKey: %s\n", k)
	}
	return b.String() + "\n"
}

// GroupLDIF is an add record for a groupOfNames holding the given uids.
func GroupLDIF(cn string, uids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nchangetype: add\nobjectClass: groupOfNames\ncn: %s\n", cn, GroupsDN, cn)
	if len(uids) == 0 {
		// groupOfNames needs a member; the group itself stands in for none.
		fmt.Fprintf(&b, "member: cn=%s,%s\n", cn, GroupsDN)
	}
	for _, u := range uids {
		fmt.Fprintf(&b, "member: uid=%s,%s\n", u, PeopleDN)
	}
	return b.String() + "\n"
}

// PosixGroupLDIF is an add record for a posixGroup with memberUid values.
func PosixGroupLDIF(cn string, gid int, uids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nchangetype: add\nobjectClass: posixGroup\ncn: %s\ngidNumber: %d\n", cn, GroupsDN, cn, gid)
	for _, u := range uids {
		fmt.Fprintf(&b, "memberUid: %s\n", u)
	}
	return b.String() + "\n"
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and localhost.
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slapdtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.pem":         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"server.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"server-key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// PasswordLDIF is a modify record giving uid's entry the password pw
// (stored as given: slapd hashes nothing itself; this is a test directory).
func PasswordLDIF(uid, pw string) string {
	return fmt.Sprintf("dn: uid=%s,%s\nchangetype: modify\nreplace: userPassword\nuserPassword: %s\n\n", uid, PeopleDN, pw)
}
