package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"paas/router/engine"
)

func TestHealthy(t *testing.T) {
	alpha := namedBackend(t, "alpha")
	src := &fakeSource{table: Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(alpha)}}}}
	logs := &syncBuffer{}
	r := newTestRouter(src, Options{Domain: "example.test", AccessLog: true, AccessLogOut: logs, Log: discardLog()})
	if err := r.Healthy(t.Context()); err == nil || !strings.Contains(err.Error(), "not serving") {
		t.Fatalf("Healthy before serving = %v, want not serving", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, ln) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = r.Healthy(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthy while serving: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Every loop answered; the probes are not access-logged.
	for range 5 {
		if err := r.Healthy(t.Context()); err != nil {
			t.Fatalf("Healthy: %v", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if strings.Contains(logs.String(), engine.ProbeHost) {
		t.Errorf("health probes were logged:\n%s", logs.String())
	}
	cancel()
	if err := receive(t, served, 5*time.Second, "Serve did not return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := r.Healthy(t.Context()); err == nil {
		t.Error("Healthy after Serve returned = nil")
	}
}

// stuckListener is a listener whose Accept never returns a connection, as
// an accept loop that is wedged: the connections stay in the queue.
type stuckListener struct {
	*net.TCPListener
	closed chan struct{}
	once   sync.Once
}

func (s *stuckListener) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

func (s *stuckListener) Close() error {
	s.once.Do(func() { close(s.closed) })
	return s.TCPListener.Close()
}

func TestHealthyNotAccepting(t *testing.T) {
	oldStall, oldSample := stallAfter, sampleEvery
	stallAfter, sampleEvery = 300*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { stallAfter, sampleEvery = oldStall, oldSample })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stuck := &stuckListener{TCPListener: ln.(*net.TCPListener), closed: make(chan struct{})}
	r := newTestRouter(&fakeSource{}, Options{Domain: "example.test", Log: discardLog()})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- r.Serve(ctx, stuck) }()
	time.Sleep(400 * time.Millisecond) // an empty queue is no stall
	if err := r.Healthy(t.Context()); err != nil {
		t.Fatalf("Healthy with nothing waiting: %v", err)
	}
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.Healthy(t.Context())
		if err != nil {
			if !strings.Contains(err.Error(), "not accepting") || !strings.Contains(err.Error(), "3 connections waiting") {
				t.Fatalf("Healthy = %v, want not accepting with 3 waiting", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Healthy stayed nil while 3 connections waited unaccepted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-served
}

// TestTakeOver runs two routers on one listening socket, each with its own
// descriptor as two processes would have, and stops the first under load:
// the second serves on, and not a request fails, also of those that were
// waiting in the accept queue or on the old router's keep-alive
// connections.
func TestTakeOver(t *testing.T) {
	alpha := namedBackend(t, "alpha")
	table := Table{Routes: []Route{{App: "alpha", Hosts: []string{"alpha.example.test"}, Backends: backends(alpha)}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the socket lives on in f
	defer f.Close()
	start := func() (context.CancelFunc, chan error) {
		l, err := net.FileListener(f) // a descriptor of its own
		if err != nil {
			t.Fatal(err)
		}
		r := newTestRouter(&fakeSource{table: table}, Options{Domain: "example.test", IdleDrain: time.Second, Log: discardLog()})
		ctx, cancel := context.WithCancel(t.Context())
		served := make(chan error, 1)
		go func() { served <- r.Serve(ctx, l) }()
		return cancel, served
	}
	stopOld, oldServed := start()

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stopLoad := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for ctx.Err() == nil {
				method := "GET"
				var body io.Reader
				if i%2 == 1 {
					// Not idempotent: a client does not send it again,
					// so only a server that answers what it read passes.
					method, body = "POST", strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, url, body)
				req.Host = "alpha.example.test"
				resp, err := client.Do(req)
				sent.Add(1)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	stopNew, newServed := start()
	time.Sleep(200 * time.Millisecond)
	stopOld()
	if err := receive(t, oldServed, 10*time.Second, "the old router did not stop"); err != nil {
		t.Errorf("old router: %v", err)
	}
	before := sent.Load()
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	wg.Wait()
	if sent.Load() == before {
		t.Error("no request was served after the old router stopped")
	}
	stopNew()
	<-newServed
	t.Logf("sent %d failed %d", sent.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	// The socket is still open in f: a third router could take over.
	if err := checkOpen(f); err != nil {
		t.Error(err)
	}
}

func checkOpen(f *os.File) error {
	l, err := net.FileListener(f)
	if err != nil {
		return fmt.Errorf("the socket did not survive: %w", err)
	}
	return l.Close()
}
