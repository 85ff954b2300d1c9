package routing

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

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
// (not a test function) or melody's and go-redis' workers.
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
		if strings.Contains(g, "_test.go") || strings.Contains(g, "testing.tRunner") || strings.Contains(g, "testing.(*F)") {
			continue
		}
		if strings.Contains(g, "switchboard/switchboard/") || strings.Contains(g, "olahol/melody") || strings.Contains(g, "redis/go-redis") {
			out = append(out, g)
		}
	}
	return out
}
