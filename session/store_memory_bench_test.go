package session

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkMemoryStoreHeap reports the heap a MemoryStore holds per binding,
// for the two layouts that bound it: every connection in one action, and
// every connection in an action of its own. Users are distinct in both. The
// bindings' strings are allocated before the first measurement, so only the
// store's own structures count.
func BenchmarkMemoryStoreHeap(b *testing.B) {
	const n = 10_000
	layouts := []struct {
		name   string
		action func(i int) string
	}{
		{"OneAction", func(int) string { return "chat.room-1" }},
		{"ActionPerBinding", func(i int) string { return fmt.Sprintf("chat.room-%d", i) }},
	}
	for _, l := range layouts {
		b.Run(l.name, func(b *testing.B) {
			bs := make([]Binding, n)
			at := time.Now()
			for i := range bs {
				bs[i] = Binding{
					ConnID:      fmt.Sprintf("conn-%08d", i),
					UserID:      fmt.Sprintf("auth0|user-%08d", i),
					Action:      l.action(i),
					Node:        "n1",
					ConnectedAt: at,
				}
			}
			ctx := context.Background()
			var held uint64
			for b.Loop() {
				b.StopTimer()
				before := heapAlloc()
				b.StartTimer()
				s := NewMemoryStore()
				for _, bd := range bs {
					if _, err := s.Bind(ctx, bd); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				held += heapAlloc() - before
				runtime.KeepAlive(s)
				b.StartTimer()
			}
			runtime.KeepAlive(bs)
			b.ReportMetric(float64(held)/float64(b.N)/n, "B/binding")
		})
	}
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
