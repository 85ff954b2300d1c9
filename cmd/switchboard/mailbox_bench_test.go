package main

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCatchUp compares, for 1,000 direct messages of ~100 bytes, the
// time they take to reach a connected recipient live (from the first send
// to the last arrival) with the time a recipient that was away takes to
// get them all (from its online with since to the last arrival). It
// reports both per 1,000 and their ratio (docs/benchmarks.md).
func BenchmarkCatchUp(b *testing.B) {
	const total = 1000
	n := startNode(b, "--rate-limit", "1000000", "--rate-burst", "1000000")
	alice := n.online(b, "chat", "alice")
	text := fmt.Sprintf("%060d", 0)
	var live, catchUp time.Duration
	i := 0
	for b.Loop() {
		i++
		// Live.
		bob := n.online(b, "chat", fmt.Sprintf("live-%d", i))
		start := time.Now()
		for range total {
			alice.send(map[string]any{"to": bob.name, "text": text})
		}
		bob.mails(total, mailWait)
		live += time.Since(start)
		// Away, then back.
		away := fmt.Sprintf("away-%d", i)
		for j := range total {
			alice.send(map[string]any{"to": away, "text": text, "id": j})
		}
		for range total {
			alice.expect("ack")
		}
		c := n.dial(b, "/ws", nil)
		c.name = away
		start = time.Now()
		c.send(map[string]any{"type": "online", "action": "chat", "user_id": away, "since": 0})
		c.mails(total, mailWait)
		catchUp += time.Since(start)
	}
	b.ReportMetric(float64(live.Milliseconds())/float64(b.N), "ms-live/1000")
	b.ReportMetric(float64(catchUp.Milliseconds())/float64(b.N), "ms-catchup/1000")
	b.ReportMetric(float64(catchUp)/float64(live), "catchup/live")
}
