package router

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"paas/router/engine"
)

// TestMain runs the tests twice: with the front's event loops, as the
// router serves, and with a goroutine per connection, the front's way
// where epoll is unavailable.
func TestMain(m *testing.M) {
	code := m.Run()
	fuzzing := flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !testing.Short() && !fuzzing {
		fmt.Println("--- again, with a goroutine per connection instead of the event loops")
		testEngine = engine.Goroutines
		code = m.Run()
	}
	os.Exit(code)
}

// testEngine is the Options.Engine of every router a test makes with
// newTestRouter.
var testEngine = engine.EventLoops

// newTestRouter is New with Options.Engine set to testEngine.
func newTestRouter(src Source, opts Options) *Router {
	opts.Engine = testEngine
	return New(src, opts)
}
