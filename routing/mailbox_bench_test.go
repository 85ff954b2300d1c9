package routing

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/session"
)

// BenchmarkRouteMailbox is BenchmarkRouteLocal's direct-ack case with the
// mailbox off, in memory and in Redis: the sender's reader from parse to
// the ack queued, over real sockets, the message kept first when the
// mailbox is on. (With Redis the append is a round trip of its own until
// the broker keeps and routes in one script.)
func BenchmarkRouteMailbox(b *testing.B) {
	// A new id per message: a repeated one would be deduplicated.
	msg := []byte(`{"to":"bob","text":"hello, how are you?","id":0000000000}`)
	idAt := len(msg) - 11
	for _, bc := range []struct {
		name string
		mbox func(b *testing.B) session.Mailbox
	}{
		{"off", func(*testing.B) session.Mailbox { return nil }},
		{"memory", func(*testing.B) session.Mailbox {
			return session.NewMemoryMailbox(session.MailboxOptions{}, 0)
		}},
		{"redis", func(b *testing.B) session.Mailbox {
			c, err := session.NewRedisClient(redistest.Start(b).URL())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			return session.NewRedisMailbox(c, "", session.MailboxOptions{})
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := newMailboxBenchNode(b, bc.mbox(b))
			sender := n.conn(b, "alice")
			n.conn(b, "bob")
			b.ReportAllocs()
			var ops int64
			for b.Loop() {
				strconv.AppendInt(msg[:idAt], 1_000_000_000+ops, 10) // same length
				n.r.handle(sender, msg)
				if ops++; ops%256 == 0 {
					b.StopTimer()
					n.waitRead(b, (ops-256)*2)
					b.StartTimer()
				}
			}
			b.StopTimer()
			n.waitRead(b, ops*2)
		})
	}
}

// newMailboxBenchNode is newBenchNode with a mailbox (nil: off).
func newMailboxBenchNode(b *testing.B, mbox session.Mailbox) *benchNode {
	b.Helper()
	r, err := New(Config{Node: "bench", RateLimit: 1e12, RateBurst: 1 << 30, OutboundQueue: 1 << 12,
		NoPresenceEvents: true, Mailbox: mbox})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	srv := httptest.NewServer(r)
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := r.Shutdown(sctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		srv.Close()
		cancel()
		<-done
	})
	return &benchNode{r: r, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/chat"}
}
