package router

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"paas/router/engine"
)

// TestEngineOption checks that Options.Engine picks how the front serves:
// event loops where the system has them, a goroutine per connection when
// asked; either way a request is answered.
func TestEngineOption(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  engine.Kind
		loops bool
	}{
		{"event loops", engine.EventLoops, engine.HaveEventLoops},
		{"goroutines", engine.Goroutines, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(&fakeSource{}, Options{Engine: tc.kind, Domain: "example.test", Log: discardLog()})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			served := make(chan error, 1)
			go func() { served <- r.Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			var st *serving
			for deadline := time.Now().Add(10 * time.Second); st == nil; {
				if st = r.serving.Load(); st == nil {
					if time.Now().After(deadline) {
						t.Fatal("router not serving after 10 s")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			if got := st.f.Loops() > 0; got != tc.loops {
				t.Errorf("event loops running = %v, want %v", got, tc.loops)
			}
			client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "nope.example.test"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("unrouted host: status %d, want 404", resp.StatusCode)
			}
		})
	}
}
