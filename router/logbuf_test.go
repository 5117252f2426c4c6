package router

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestBufferedLog(t *testing.T) {
	out := &lockedBuffer{}
	b := NewBufferedLog(out, 50*time.Millisecond)
	for i := range 100 {
		b.Write([]byte(strings.Repeat("x", i%10) + "\n"))
	}
	if s, _ := out.snapshot(); s != "" {
		t.Fatalf("written before the interval: %q", s)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		s, writes := out.snapshot()
		if strings.Count(s, "\n") == 100 {
			if writes != 1 {
				t.Errorf("100 lines took %d writes, want 1", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines not flushed within the interval: %d", strings.Count(s, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A full buffer is written at once, well before the interval; Close
	// writes the rest.
	b.ticker.Reset(time.Hour)
	line := []byte(strings.Repeat("y", 1000) + "\n")
	for range 100 {
		b.Write(line)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s, _ := out.snapshot()
		if strings.Count(s, "y\n") >= 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a full buffer was not written: %d lines out", strings.Count(s, "y\n"))
		}
	}
	b.Write([]byte("last\n"))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.snapshot(); !strings.HasSuffix(s, "last\n") || strings.Count(s, "y\n") != 100 {
		t.Errorf("Close did not write everything")
	}
}

// gatedWriter blocks every Write until the gate is opened.
type gatedWriter struct {
	gate chan struct{}
	lockedBuffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	return g.lockedBuffer.Write(p)
}

// A request logging a line never waits for a slow log, until the backlog
// limit; no line is lost.
func TestBufferedLogDoesNotWaitForASlowWriter(t *testing.T) {
	out := &gatedWriter{gate: make(chan struct{})}
	b := NewBufferedLog(out, 10*time.Millisecond)
	line := []byte(strings.Repeat("z", 99) + "\n")
	written := make(chan struct{})
	go func() {
		for range maxBacklog / len(line) / 2 { // half the backlog: several full buffers
			b.Write(line)
		}
		close(written)
	}()
	receive(t, written, 5*time.Second, "Write waited for a blocked writer below the backlog limit")
	close(out.gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if s, _ := out.snapshot(); strings.Count(s, "\n") != maxBacklog/len(line)/2 {
		t.Errorf("%d lines written, want %d", strings.Count(s, "\n"), maxBacklog/len(line)/2)
	}
}
