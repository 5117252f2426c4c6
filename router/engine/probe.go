package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
)

// The router's health check sends a request over a socket pair to each
// event loop (or to a goroutine of its own without them): it goes through
// the same code as a client's, and the Host must answer it with a 404 (no
// route has ProbeHost).
const (
	ProbeHost     = "_probe.router.paas" // not a DNS name: no app has it
	probeRequest  = "GET / HTTP/1.1\r\nHost: " + ProbeHost + "\r\nConnection: close\r\n\r\n"
	probeResponse = "HTTP/1.1 404 "
)

// Probe sends a request for ProbeHost to every event loop that serves (or
// to a goroutine when none does) and checks that each is answered 404; it
// reports what failed.
func (f *Front) Probe(ctx context.Context) error {
	probed := false
	for i, l := range f.loops {
		if l.dead.Load() {
			continue
		}
		probed = true
		if err := f.probe(ctx, l); err != nil {
			return fmt.Errorf("event loop %d: %w", i, err)
		}
	}
	if !probed {
		return f.probe(ctx, nil)
	}
	return nil
}

// probe sends the probe request to loop l (nil: to a goroutine) as a
// client connection and checks the answer.
func (f *Front) probe(ctx context.Context, l *loop) error {
	mine, theirs, err := probeConns()
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer mine.Close()
	var taken bool
	if l != nil {
		taken = f.toLoop(l, theirs, func() {})
	} else {
		taken = f.toGoroutine(theirs, nil, f.h1, nil, func() {})
	}
	if !taken {
		return errors.New("stopping")
	}
	if d, ok := ctx.Deadline(); ok {
		_ = mine.SetDeadline(d)
	}
	if _, err := mine.Write([]byte(probeRequest)); err != nil {
		return fmt.Errorf("probe: send: %w", err)
	}
	line, err := bufio.NewReaderSize(mine, 256).ReadString('\n')
	if err != nil {
		return fmt.Errorf("probe: no answer: %w", err)
	}
	if !strings.HasPrefix(line, probeResponse) {
		return fmt.Errorf("probe: answered %q", strings.TrimSpace(line))
	}
	return nil
}
