package router

import (
	"os"
	"runtime/debug"
)

// routerGCPercent trades a little memory (the router's heap is small: tables
// and per-request buffers) for less CPU in the garbage collector, about 15%
// less CPU per proxied request in scripts/bench/router.
const routerGCPercent = 400

// TuneGC sets the router process's GC target unless GOGC says otherwise.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(routerGCPercent)
	}
}
