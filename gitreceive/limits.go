package gitreceive

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	shlex "github.com/anmitsu/go-shlex"
	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"paas/internal/connlimit"
	"paas/internal/paas"
)

// Limits bound what one SSH client may hold open or send. A zero field is
// no limit.
type Limits struct {
	// MaxPushSize is the largest pack one push may send, in bytes: git's
	// receive.maxInputSize, so git-receive-pack stops reading, and stores
	// nothing, once a pack grows past it.
	MaxPushSize int64
	// MaxConnsPerAddr is how many SSH connections one client address may
	// hold open at once; one more is closed before the SSH handshake.
	MaxConnsPerAddr int
	// AuthTimeout closes a connection that has not authenticated within it.
	AuthTimeout time.Duration
	// IdleTimeout closes a connection that has had no session open for that
	// long (a client that finished its command but holds the connection, a
	// ControlMaster left behind). A session that is open is never idle,
	// however long it prints nothing: a push whose build is silent for
	// minutes, a followed log.
	IdleTimeout time.Duration
}

// Default limits of `paasd serve`.
const (
	DefaultMaxPushSize     = 1 << 30
	DefaultMaxConnsPerAddr = 50
	DefaultAuthTimeout     = 30 * time.Second
	DefaultIdleTimeout     = 10 * time.Minute
)

// maxSessions is how many sessions one connection may have open at once
// (OpenSSH's MaxSessions default).
const maxSessions = 10

// Refusals records, in the audit log, input refused before any command or
// push handler saw it: a command line that cannot be read, a push over the
// size limit, an SSH request too large for the protocol.
type Refusals interface {
	Refused(id paas.Identity, action, app, detail string)
}

// ErrCommandLine is wrapped by every error of SplitCommand.
var ErrCommandLine = errors.New("the command line cannot be read")

// SplitCommand splits an SSH command line into words as a POSIX shell would
// (quotes and backslashes; no expansion). A command line whose words would
// silently differ from what was sent is refused as a whole: an unterminated
// quote, and a control character outside quotes, where it would end a word
// (a newline in an app name would make it two words and lose the second).
// A control character inside a quoted word stays in the word: the command
// decides whether that word may hold one (a config value may).
func SplitCommand(raw string) ([]string, error) {
	if !utf8.ValidString(raw) {
		return nil, fmt.Errorf("%w: it is not UTF-8 text", ErrCommandLine)
	}
	words, err := shlex.Split(raw, true)
	switch {
	case errors.Is(err, shlex.ErrNoClosing):
		return nil, fmt.Errorf("%w: a quote is not closed", ErrCommandLine)
	case errors.Is(err, shlex.ErrNoEscaped):
		return nil, fmt.Errorf("%w: it ends with a lone backslash", ErrCommandLine)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrCommandLine, err)
	}
	kept := 0
	for _, w := range words {
		kept += countControl(w)
	}
	if countControl(raw) != kept {
		c, _ := paas.FirstControl(raw)
		return nil, fmt.Errorf("%w: it holds a control character (%s) between its words; "+
			"names and arguments cannot hold one. A config value that does: quote the whole KEY=VALUE, or use config:set --encoded",
			ErrCommandLine, paas.QuoteRune(c))
	}
	return words, nil
}

func countControl(s string) int {
	n := 0
	for _, r := range s {
		if paas.IsControl(r) {
			n++
		}
	}
	return n
}

// connState is what the limits know of one connection: its open sessions
// and the timer that closes it when it has none for Limits.IdleTimeout.
type connState struct {
	mu       sync.Mutex
	sessions int
	idle     *time.Timer // nil without an idle timeout
}

type connStateKey struct{}

// openSession counts a new session; false when the connection has its
// maximum open already.
func (st *connState) openSession() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sessions >= maxSessions {
		return false
	}
	st.sessions++
	if st.idle != nil {
		st.idle.Stop()
	}
	return true
}

func (st *connState) closeSession(idle time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.sessions--; st.sessions == 0 && st.idle != nil {
		st.idle.Reset(idle)
	}
}

func hostOf(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// admit is the server's ConnCallback: it refuses a connection over its
// address's limit, and closes one that does not authenticate in time or
// stays without a session for too long.
func (s *Server) admit(ctx ssh.Context, c net.Conn) net.Conn {
	lim := s.opts.Limits
	host := hostOf(c.RemoteAddr())
	release, ok := s.conns.Acquire(c.RemoteAddr())
	if !ok {
		s.opts.Log.Warn("refused an SSH connection: too many from its address", "remote", host, "limit", lim.MaxConnsPerAddr)
		// Before the version exchange a server may send lines of text;
		// clients skip them, and show them when debugging.
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(c, "paas: too many connections from %s (at most %d at once)\r\n", host, lim.MaxConnsPerAddr)
		return nil
	}
	tc := &connlimit.Conn{Conn: c, Release: release}
	st := &connState{}
	if lim.IdleTimeout > 0 {
		st.idle = time.AfterFunc(max(lim.IdleTimeout, lim.AuthTimeout), func() {
			s.opts.Log.Info("closed an idle SSH connection", "remote", c.RemoteAddr().String(), "idle", lim.IdleTimeout.String())
			tc.Close()
		})
	}
	ctx.SetValue(connStateKey{}, st)
	var authTimer *time.Timer
	if lim.AuthTimeout > 0 {
		authTimer = time.AfterFunc(lim.AuthTimeout, func() {
			if ctx.Value(ssh.ContextKeyConn) == nil {
				s.opts.Log.Info("closed an SSH connection that did not authenticate in time", "remote", c.RemoteAddr().String(), "timeout", lim.AuthTimeout.String())
				tc.Close()
			}
		})
	}
	go func() {
		<-ctx.Done()
		if authTimer != nil {
			authTimer.Stop()
		}
		if st.idle != nil {
			st.idle.Stop()
		}
		s.connEnded(ctx)
	}()
	return tc
}

// sessionChannel opens a session within the connection's limits.
func (s *Server) sessionChannel(srv *ssh.Server, conn *gossh.ServerConn, ch gossh.NewChannel, ctx ssh.Context) {
	if st, ok := ctx.Value(connStateKey{}).(*connState); ok {
		if !st.openSession() {
			_ = ch.Reject(gossh.ResourceShortage, fmt.Sprintf("at most %d sessions at once on one connection", maxSessions))
			return
		}
		defer st.closeSession(s.opts.Limits.IdleTimeout)
	}
	ssh.DefaultSessionHandler(srv, conn, ch, ctx)
}

// connEnded records an authenticated connection that the SSH transport
// closed because the client sent a request larger than an SSH packet may be
// (256 KB: a command line that long). Nothing can be said to the client
// then, as the transport has failed; the audit log and the log say it.
func (s *Server) connEnded(ctx ssh.Context) {
	sc, ok := ctx.Value(ssh.ContextKeyConn).(*gossh.ServerConn)
	if !ok {
		return
	}
	err := sc.Wait()
	if err == nil || !isPacketTooLarge(err) {
		return
	}
	key, _ := ctx.Value(ssh.ContextKeyPublicKey).(ssh.PublicKey)
	id := paas.Identity{Name: "unknown"}
	if key != nil {
		if known, ok, _ := s.opts.Auth.Identify(key); ok {
			id = known
		}
	}
	detail := "the client sent an SSH packet over 256 KB (a command line that long); the connection was closed"
	s.opts.Log.Warn("SSH request too large; connection closed", "user", id.Name, "remote", hostOf(sc.RemoteAddr()), "err", err)
	s.refused(id, "ssh", "", detail)
}

// isPacketTooLarge reports x/crypto's errors for a packet over its 256 KB
// limit (their wording depends on the cipher).
func isPacketTooLarge(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "packet too large") || strings.Contains(msg, "max packet length exceeded")
}

func (s *Server) refused(id paas.Identity, action, app, detail string) {
	if s.opts.Refusals != nil {
		s.opts.Refusals.Refused(id, action, app, detail)
	}
}
