package routing

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runningRouters counts the routers of the running test whose Run has
// not returned: goroutines are checked when the last one has stopped.
var runningRouters atomic.Int32

// routerRunning records that a test router's Run is starting.
func routerRunning() { runningRouters.Add(1) }

// routerStopped records that a test router's Shutdown and Run returned
// (and its HTTP server is closed); after the last one, no goroutine of the
// router may be left.
func routerStopped(t testing.TB) {
	t.Helper()
	if runningRouters.Add(-1) == 0 {
		checkNoRouterGoroutines(t)
	}
}

// checkNoRouterGoroutines fails t when a goroutine running code of this
// module (the router, its connections, brokers, stores) is still alive a
// while after Shutdown and Run returned, as nats.go checks after Close.
// Goroutines of the test itself and its helpers are ignored.
func checkNoRouterGoroutines(t testing.TB) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		left = routerGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%d goroutines left after Shutdown and Run:\n%s", len(left), strings.Join(left, "\n\n"))
}

// routerGoroutines returns the stacks of goroutines running module code
// (not a test's) or melody's workers. (go-redis' are left out: a test's own
// Redis client may outlive the router.)
func routerGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "_test.go") || strings.Contains(g, "testing.tRunner") || strings.Contains(g, "internal/redistest") || strings.Contains(g, "testing.(*F)") {
			continue
		}
		if strings.Contains(g, "switchboard/switchboard/") || strings.Contains(g, "olahol/melody") {
			out = append(out, g)
		}
	}
	return out
}
