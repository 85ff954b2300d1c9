package main

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runningNodes counts the test's servers whose Run has not returned: once
// the last one has, no goroutine of the server may be left, as nats.go
// checks after Close.
var runningNodes atomic.Int32

// nodeStopped records that a server's Run returned, and after the last one
// checks that none of its goroutines is left.
func nodeStopped(t testing.TB) {
	t.Helper()
	if runningNodes.Add(-1) != 0 {
		return
	}
	var left []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if left = serverGoroutines(); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%d goroutines left after the server stopped:\n%s", len(left), strings.Join(left, "\n\n"))
}

// serverGoroutines returns the stacks of goroutines running the module's
// code (not a test's) or melody's workers. go-redis' are left out: a test's
// own Redis client may outlive the server.
func serverGoroutines() []string {
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
		if strings.Contains(g, "_test.go") || strings.Contains(g, "testing.tRunner") || strings.Contains(g, "internal/redistest") {
			continue
		}
		if strings.Contains(g, "switchboard/switchboard/") || strings.Contains(g, "olahol/melody") {
			out = append(out, g)
		}
	}
	return out
}
