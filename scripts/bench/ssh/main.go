// Command ssh is the authentication benchmark of issue 6: an SSH handshake
// plus `whoami` on a new connection, against paasd's SSH server with the key
// in the local admin keys file and with the key in a real slapd (Debian's,
// started on loopback with the project's openssh-lpk schema), cold and warm,
// interleaved, median and p99 over N connections each, and the ratios.
//
//	go run ./scripts/bench/ssh [-n 1000] [-audit]
//
// -audit also records each whoami in the audit log, as paasd does: one
// fsynced store write per command, the same on every side, which adds its
// own disk noise to what is measured here, the cost of finding the key.
//
// Configurations, each on its own in-process paasd SSH server:
//
//	local warm    key in the admin keys file, file unchanged (parsed once)
//	local cold    the admin keys file changes before every connection (re-read)
//	ldap warm     key confirmed by the directory within the cache TTL
//	ldap cold     an empty key cache before every connection: the directory
//	              is asked (key, then groups) over the reused, bound LDAP
//	              connection
//	ldap cold+dial  as cold, and the LDAP connection is dropped before every
//	              connection (dial + bind + searches each time)
//
// It needs slapd and ldap-utils (scripts/install.sh --deps installs them).
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"paas/gitreceive"
	"paas/internal/auth"
	"paas/internal/commands"
	"paas/internal/directory"
	"paas/internal/directory/slapdtest"
	"paas/internal/paas"
	"paas/internal/store"
)

type noKeys struct{}

func (noKeys) Keys() ([]*paas.SSHKey, error) { return nil, nil }

type noRepos struct{}

func (noRepos) RepoFor(context.Context, paas.Identity, string, bool, io.Writer) (string, error) {
	return "", paas.ErrAppNotFound
}

// fresh is an authenticator replaced before each connection (an empty cache).
type fresh struct {
	cur  atomic.Pointer[auth.DirectoryKeys]
	make func() *auth.DirectoryKeys
}

func (f *fresh) reset() { f.cur.Store(f.make()) }

func (f *fresh) Identify(key gossh.PublicKey) (paas.Identity, bool, error) {
	return f.cur.Load().Identify(key)
}

// audit records every command in the store, as paasd does.
type audit struct{ st *store.Store }

func (a audit) Record(e *paas.Event) { a.st.AddEvent(e) }

type noPushes struct{}

func (noPushes) HandlePush(context.Context, *gitreceive.Push, io.Writer) error { return nil }
func (noPushes) PushDone(context.Context, *gitreceive.Push, io.Writer)         {}

// config is one server under test.
var withAudit bool

type config struct {
	name   string
	addr   string
	before func() // runs before each connection, untimed
	times  []time.Duration
}

func main() {
	n := flag.Int("n", 1000, "connections per configuration")
	flag.BoolVar(&withAudit, "audit", false, "record each whoami in the audit log as paasd does (one fsynced store write, the same on every side)")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	tmp, err := os.MkdirTemp("", "paas-bench-ssh")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	log := slog.New(slog.DiscardHandler)

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	authorized := string(gossh.MarshalAuthorizedKey(signer.PublicKey()))

	// The directory: the same key on a user in a group.
	srv, err := slapdtest.Start(filepath.Join(tmp, "slapd"))
	if err != nil {
		return fmt.Errorf("start slapd (scripts/install.sh --deps installs it): %w", err)
	}
	defer srv.Stop()
	if err := srv.Modify(slapdtest.UserLDIF("bench", strings.TrimSpace(authorized)) + slapdtest.GroupLDIF("team", "bench")); err != nil {
		return err
	}
	newDir := func() (*directory.Client, error) {
		return directory.New(directory.Config{URL: srv.URL, BindDN: slapdtest.ServiceDN, BindPassword: slapdtest.ServicePassword, BaseDN: slapdtest.Suffix, Timeout: 2 * time.Second})
	}

	adminFile := filepath.Join(tmp, "admin_keys")
	if err := os.WriteFile(adminFile, []byte(authorized), 0o600); err != nil {
		return err
	}
	noAdmin := filepath.Join(tmp, "no_admin_keys")
	mtime := time.Now()
	touchAdmin := func() {
		mtime = mtime.Add(time.Second)
		os.Chtimes(adminFile, mtime, mtime)
	}

	warmDir, err := newDir()
	if err != nil {
		return err
	}
	defer warmDir.Close()
	coldDir, err := newDir()
	if err != nil {
		return err
	}
	defer coldDir.Close()
	dialDir, err := newDir()
	if err != nil {
		return err
	}
	defer dialDir.Close()

	newKeys := func(dir auth.Directory) func() *auth.DirectoryKeys {
		return func() *auth.DirectoryKeys {
			return auth.NewDirectoryKeys(auth.NewKeys(noAdmin, noKeys{}), dir, time.Minute, 2*time.Second, log)
		}
	}
	cold := &fresh{make: newKeys(coldDir)}
	cold.reset()
	coldDial := &fresh{make: newKeys(dialDir)}
	coldDial.reset()
	auths := []struct {
		name   string
		authn  gitreceive.Authenticator
		before func()
	}{
		{"local warm", auth.NewKeys(adminFile, noKeys{}), nil},
		{"local cold", auth.NewKeys(adminFile, noKeys{}), touchAdmin},
		{"ldap warm", auth.NewDirectoryKeys(auth.NewKeys(noAdmin, noKeys{}), warmDir, time.Hour, 2*time.Second, log), nil},
		{"ldap cold", cold, cold.reset},
		{"ldap cold+dial", coldDial, func() { coldDial.reset(); dialDir.Close() }},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cfgs []*config
	for i, a := range auths {
		dir := filepath.Join(tmp, fmt.Sprint("server", i))
		st, err := store.Open(dir)
		if err != nil {
			return err
		}
		defer st.Close()
		dispatcher := commands.NewDispatcher(st, "bench", commands.WhoamiCommands())
		if withAudit {
			dispatcher.SetAuditor(audit{st})
		}
		s, err := gitreceive.New(gitreceive.Options{
			Addr: "127.0.0.1:0", HostKeyPath: filepath.Join(dir, "host_key"), DataDir: dir,
			Auth: a.authn, Repos: noRepos{}, Pushes: noPushes{}, Commands: dispatcher, Log: log,
		})
		if err != nil {
			return err
		}
		if err := s.Listen(); err != nil {
			return err
		}
		go s.Run(ctx, time.Second)
		cfgs = append(cfgs, &config{name: a.name, addr: s.Addr().String(), before: a.before})
	}

	client := &gossh.ClientConfig{User: "git", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
	once := func(c *config) (time.Duration, error) {
		if c.before != nil {
			c.before()
		}
		start := time.Now()
		conn, err := gossh.Dial("tcp", c.addr, client)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c.name, err)
		}
		defer conn.Close()
		sess, err := conn.NewSession()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", c.name, err)
		}
		defer sess.Close()
		out, err := sess.Output("whoami")
		d := time.Since(start)
		if err != nil || !strings.Contains(string(out), "Name:") {
			return 0, fmt.Errorf("%s: whoami: %v: %s", c.name, err, out)
		}
		return d, nil
	}
	// Warm-up, so that every side has its caches and connections as its
	// name says, then interleaved rounds.
	for _, c := range cfgs {
		for range 20 {
			if _, err := once(c); err != nil {
				return err
			}
		}
	}
	for range n {
		for _, c := range cfgs {
			d, err := once(c)
			if err != nil {
				return err
			}
			c.times = append(c.times, d)
		}
	}

	fmt.Printf("SSH handshake + whoami, new connection each, %d per configuration, interleaved (ed25519 key, curve25519-sha256)\n\n", n)
	fmt.Printf("| %-15s | %9s | %9s | %16s |\n", "configuration", "median", "p99", "median vs local")
	fmt.Printf("|%s|%s|%s|%s|\n", strings.Repeat("-", 17), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 18))
	med := map[string]time.Duration{}
	for _, c := range cfgs {
		med[c.name] = percentile(c.times, 50)
	}
	for _, c := range cfgs {
		peer := "local warm"
		if strings.Contains(c.name, "cold") {
			peer = "local cold"
		}
		fmt.Printf("| %-15s | %9s | %9s | %15.2fx |\n", c.name, ms(med[c.name]), ms(percentile(c.times, 99)), float64(med[c.name])/float64(med[peer]))
	}
	added := med["ldap warm"] - med["local warm"]
	verdict := "met"
	if added >= 2*time.Millisecond {
		verdict = "NOT met"
	}
	fmt.Printf("\nLDAP adds %s at the median when warm, %s when cold (target: < 2 ms warm): %s\n",
		ms(added), ms(med["ldap cold"]-med["local cold"]), verdict)
	return nil
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
