package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// load is steady traffic through an installation's router, counting the
// requests that did not get a 200.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sent   atomic.Int64
	failed atomic.Int64

	mu    sync.Mutex
	first []string // the first failures, for the report
}

// Bounds of one load run: the scenarios run it for a minute or two.
const (
	loadWorkers  = 4
	loadMaxTime  = 5 * time.Minute
	loadMaxCount = 200_000
)

var loads byWork[*load]

// startLoad sends GETs of / for host to the router at addr (HOST:PORT).
func startLoad(addr, host string) *load {
	ctx, cancel := context.WithTimeout(context.Background(), loadMaxTime)
	l := &load{cancel: cancel}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: loadWorkers}}
	for range loadWorkers {
		l.wg.Go(func() {
			for ctx.Err() == nil && l.sent.Load() < loadMaxCount {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return // stopping: the request was cut by us, not by the platform
				}
				status := 0
				if err == nil {
					status = resp.StatusCode
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return // stopped while the body was read: cut by us too
				}
				l.sent.Add(1)
				if err != nil || status != http.StatusOK {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.first) < 5 {
						l.first = append(l.first, fmt.Sprintf("%s status %d err %v", time.Now().Format("15:04:05.000"), status, err))
					}
					l.mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return l
}

// cmdLoad: "load start HOST" starts steady GETs of / through the router;
// "load stop" stops them, prints "sent N failed M" and fails when a request
// failed (or, with !, when none did).
func cmdLoad(ts *testscript.TestScript, neg bool, args []string) {
	work := ts.Getenv("WORK")
	switch {
	case len(args) == 2 && args[0] == "start":
		if loads.get(work) != nil {
			ts.Fatalf("load already running")
		}
		loads.set(work, startLoad(installations.get(work).routerAddr(), args[1]))
	case len(args) == 1 && args[0] == "stop":
		l := loads.get(work)
		if l == nil {
			ts.Fatalf("no load running")
		}
		loads.delete(work)
		l.cancel()
		l.wg.Wait()
		fmt.Fprintf(ts.Stdout(), "sent %d failed %d\n", l.sent.Load(), l.failed.Load())
		if l.sent.Load() == 0 {
			ts.Fatalf("the load sent no request")
		}
		if (l.failed.Load() > 0) != neg {
			ts.Fatalf("%d of %d requests failed; first: %q", l.failed.Load(), l.sent.Load(), l.first)
		}
	default:
		ts.Fatalf("usage: load start HOST | load stop")
	}
}
