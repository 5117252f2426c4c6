//go:build linux

package engine

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestSockConn checks the raw reads and writes behave as net.Conn's: a
// write larger than the socket's buffers waits for room and delivers every
// byte in order, a read waits for data, deadlines end both waits with a
// timeout, and a close or a reset by the peer reads as EOF or ECONNRESET.
func TestSockConn(t *testing.T) {
	pair := func(t *testing.T) (*sockConn, *net.TCPConn) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s, ok := rawIO(c).(*sockConn)
		if !ok {
			t.Fatal("rawIO did not wrap a TCP connection")
		}
		t.Cleanup(func() { s.Close(); peer.Close() })
		return s, peer.(*net.TCPConn)
	}

	t.Run("large write, read back", func(t *testing.T) {
		s, peer := pair(t)
		data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MB
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(peer)
			got <- b
		}()
		if n, err := s.Write(data); n != len(data) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
		}
		s.Close()
		if b := <-got; !bytes.Equal(b, data) {
			t.Fatalf("peer read %d bytes, not the %d written", len(b), len(data))
		}
	})

	t.Run("read waits, then EOF", func(t *testing.T) {
		s, peer := pair(t)
		go func() {
			time.Sleep(50 * time.Millisecond)
			peer.Write([]byte("hello"))
			peer.Close()
		}()
		b, err := io.ReadAll(s)
		if string(b) != "hello" || err != nil {
			t.Fatalf("ReadAll = %q, %v; want hello, nil (EOF)", b, err)
		}
	})

	t.Run("deadlines", func(t *testing.T) {
		s, _ := pair(t)
		s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := s.Read(make([]byte, 10)); !isTimeout(err) {
			t.Fatalf("Read past its deadline: %v, want a timeout", err)
		}
		s.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := s.Write(make([]byte, 64<<20)) // the peer reads nothing
		if !isTimeout(err) {
			t.Fatalf("Write past its deadline: %v, want a timeout", err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		s, peer := pair(t)
		peer.SetLinger(0)
		peer.Close()
		_, err := s.Read(make([]byte, 10))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read after a reset: %v, want ECONNRESET", err)
		}
	})
}
