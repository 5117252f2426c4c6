//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writes collects what is written to it.
type writes struct {
	net.Conn
	b bytes.Buffer
}

func (w *writes) Write(p []byte) (int, error)      { return w.b.Write(p) }
func (w *writes) SetWriteDeadline(time.Time) error { return nil }

// FuzzLoopChunked: the loop's reading of a chunked body, fed in pieces of
// any size, passes on what frontConn.passChunked passes on, consumes as
// much, and fails where it fails.
func FuzzLoopChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT",
		"5\nhello\n0\n\n",
		"zz\r\nhello\r\n0\r\n\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"5\r\nhel",
		"0\r\n" + strings.Repeat("T: 1234567890\r\n", 5000) + "\r\n",
	} {
		f.Add(s, uint16(7))
	}
	f.Fuzz(func(t *testing.T, body string, piece uint16) {
		ref := &frontConn{f: &Front{cfg: Config{}.withDefaults()}, conn: &writes{}}
		rd := strings.NewReader(body)
		src := bufio.NewReaderSize(rd, upstreamBufSz)
		refErr := ref.passChunked(src)
		if refErr == nil {
			refErr = ref.flush()
		}
		refOut := ref.conn.(*writes).b.String()
		refLeft := body[len(body)-src.Buffered()-rd.Len():]

		b := &lconn{in: make([]byte, upstreamBufSz)}
		c := &lconn{fc: &frontConn{}, b: b, body: bodyChunked, chunk: chunkSizeLine}
		size := int(piece)%upstreamBufSz + 1
		done, failed := false, false
		rest := body
		for !done && !failed {
			if !b.makeRoom() {
				failed = true
				break
			}
			k := copy(b.in[b.n:], rest[:min(len(rest), size)])
			if k == 0 {
				failed = true // the backend closed before the end
				break
			}
			b.n += k
			rest = rest[k:]
			var err error
			done, err = c.passBody()
			failed = err != nil
		}
		if failed != (refErr != nil) {
			t.Fatalf("%q in pieces of %d: loop failed=%v, passChunked %v", body, size, failed, refErr)
		}
		if failed {
			return
		}
		if got := string(c.fc.out); got != refOut || c.fc.sent != ref.sent {
			t.Fatalf("%q in pieces of %d: loop passed %q (%d body bytes), passChunked %q (%d)", body, size, got, c.fc.sent, refOut, ref.sent)
		}
		if left := string(b.in[b.off:b.n]) + rest; left != refLeft {
			t.Fatalf("%q: the loop left %q after the body, passChunked %q", body, left, refLeft)
		}
	})
}

// A sweep that closes several idle backend connections at once closes each
// of them, once: removing one from the pool while walking it must not skip
// the next one nor close the last one twice (a second close(2) of a
// descriptor number closes whatever socket was given that number since).
func TestSweepPoolsClosesEachOnce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprintf("%d idle", n), func(t *testing.T) {
			l := &loop{pools: map[*Backend][]*lconn{}, now: time.Now()}
			be := &Backend{}
			var peers []int
			for range n {
				fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { syscall.Close(fds[1]) })
				peers = append(peers, fds[1])
				b := &lconn{fd: fds[0], pool: be}
				l.track(b)
				l.pool(b)
			}
			be.idleCloses.Add(1) // the backend's idle connections were closed
			l.sweepPools(false)
			if len(l.pools) != 0 {
				t.Errorf("%d connections left in the pool, want none", len(l.pools[be]))
			}
			for i, p := range peers {
				k, err := syscall.Read(p, make([]byte, 1))
				if k != 0 || err != nil {
					t.Errorf("connection %d: read from its peer = %d, %v; want 0 (closed)", i, k, err) // EAGAIN: still open
				}
			}
		})
	}
}
