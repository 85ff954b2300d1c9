package session

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkMemoryMailboxHeap reports the heap a MemoryMailbox holds per
// kept message of 100 bytes (the frame as delivered, seq included), for
// two layouts: one mailbox per user with 10 messages each, and 100
// messages in each of 100 mailboxes. The heads are allocated before the
// first measurement, so only what the mailbox keeps counts: the frame, its
// entries, and the records of the mailboxes.
func BenchmarkMemoryMailboxHeap(b *testing.B) {
	const n = 10_000
	layouts := []struct {
		name  string
		boxes int
	}{
		{"10PerMailbox", n / 10},
		{"100PerMailbox", n / 100},
	}
	for _, l := range layouts {
		b.Run(l.name, func(b *testing.B) {
			users := make([]string, l.boxes)
			for i := range users {
				users[i] = fmt.Sprintf("auth0|user-%08d", i)
			}
			// 100 bytes with `"seq":NNNN}`.
			const start, end = `{"from":"alice","action":"chat","ts":1795582859711,"to":"bob","text":"`, `","type":"message","seq":`
			h := []byte(start + strings.Repeat("x", 100-len(start)-len(end)-len("1000}")) + end)
			ctx := context.Background()
			var held uint64
			for b.Loop() {
				b.StopTimer()
				before := heapAlloc()
				b.StartTimer()
				m := NewMemoryMailbox(MailboxOptions{Size: n}, 0)
				for i := range n {
					if _, _, _, err := m.Append(ctx, users[i%l.boxes], "chat", "alice", "", h); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				held += heapAlloc() - before
				if k, _ := m.Kept(); k != n {
					b.Fatalf("kept %d, want %d", k, n)
				}
				runtime.KeepAlive(m)
				b.StartTimer()
			}
			b.ReportMetric(float64(held)/float64(b.N)/n, "B/message")
			b.ReportMetric(float64(len(h)+len("1000}")), "frame-bytes")
		})
	}
}
