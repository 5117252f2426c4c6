package router

import (
	"io"
	"sync"
	"time"
)

// BufferedLog batches log lines: they are appended to a buffer written out
// when it holds maxBuffered bytes, and at least every interval, so that a
// busy router does not pay one write system call per access log line (nginx's
// access_log buffer= does the same). Each Write must be whole lines, as a
// slog handler's are. Close writes what is left.
type BufferedLog struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	err    error
	ticker *time.Ticker
	stop   chan struct{}
	done   chan struct{}
}

const maxBuffered = 64 << 10

// NewBufferedLog returns a BufferedLog writing to w.
func NewBufferedLog(w io.Writer, interval time.Duration) *BufferedLog {
	b := &BufferedLog{w: w, buf: make([]byte, 0, maxBuffered), ticker: time.NewTicker(interval), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			select {
			case <-b.stop:
				return
			case <-b.ticker.C:
				_ = b.Flush()
			}
		}
	}()
	return b
}

// Write buffers p.
func (b *BufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > maxBuffered {
		b.flushLocked()
	}
	if len(p) > maxBuffered {
		if _, err := b.w.Write(p); err != nil {
			b.err = err
		}
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes the buffered lines out and returns the first write error
// seen since the last Flush.
func (b *BufferedLog) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *BufferedLog) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Close stops the periodic flush and writes what is left.
func (b *BufferedLog) Close() error {
	b.ticker.Stop()
	close(b.stop)
	<-b.done
	return b.Flush()
}
