package router

import (
	"io"
	"sync"
	"time"
)

// BufferedLog batches log lines: they are appended to a buffer written out
// when it holds maxBuffered bytes, and at least every interval, so that a
// busy router does not pay one write system call per access log line (nginx's
// access_log buffer= does the same). The writes happen in its own goroutine,
// outside the lock lines are appended under, so a request never waits for
// the log's file or pipe. Each Write must be whole lines, as a slog
// handler's are. Close writes what is left.
type BufferedLog struct {
	mu  sync.Mutex // guards buf and err
	buf []byte
	err error

	wmu   sync.Mutex // one write to w at a time, in order; guards spare
	w     io.Writer
	spare []byte

	ticker *time.Ticker
	kick   chan struct{} // the buffer is full
	stop   chan struct{}
	done   chan struct{}
}

const maxBuffered = 64 << 10

// maxBacklog is how much may pile up while a write is slow; past it, Write
// waits for the log (it never drops a line).
const maxBacklog = 16 * maxBuffered

// NewBufferedLog returns a BufferedLog writing to w.
func NewBufferedLog(w io.Writer, interval time.Duration) *BufferedLog {
	b := &BufferedLog{w: w, buf: make([]byte, 0, maxBuffered), spare: make([]byte, 0, maxBuffered),
		ticker: time.NewTicker(interval), kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			select {
			case <-b.stop:
				return
			case <-b.ticker.C:
			case <-b.kick:
			}
			b.flush()
		}
	}()
	return b
}

// Write buffers p.
func (b *BufferedLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	n := len(b.buf)
	b.mu.Unlock()
	switch {
	case n >= maxBacklog:
		b.flush()
	case n >= maxBuffered:
		select {
		case b.kick <- struct{}{}:
		default: // already kicked
		}
	}
	return len(p), nil
}

// Flush writes the buffered lines out and returns the first write error
// seen since the last Flush.
func (b *BufferedLog) Flush() error {
	b.flush()
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.err
	b.err = nil
	return err
}

// flush swaps the buffer for the spare one and writes it.
func (b *BufferedLog) flush() {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		if _, err := b.w.Write(out); err != nil {
			b.mu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.mu.Unlock()
		}
	}
	if cap(out) > maxBacklog { // do not keep a burst's buffer
		out = make([]byte, 0, maxBuffered)
	}
	b.spare = out[:0]
}

// Close stops the periodic flush and writes what is left.
func (b *BufferedLog) Close() error {
	b.ticker.Stop()
	close(b.stop)
	<-b.done
	return b.Flush()
}
