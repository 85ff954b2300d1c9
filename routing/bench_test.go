package routing

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// benchMessages are typical client messages: a short direct chat line and
// a 1 KiB one with nested data.
var benchMessages = []struct {
	name string
	msg  []byte
}{
	{"small", []byte(`{"to":"bob","text":"hello, how are you?","id":42}`)},
	{"1KiB", []byte(`{"type":"chat","to":"bob","id":"c0ffee","meta":{"client":"web","v":[1,2,3]},"text":"` +
		strings.Repeat("lorem ipsum ", 80) + `"}`)},
}

func BenchmarkParse(b *testing.B) {
	for _, bm := range benchMessages {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.msg)))
			for b.Loop() {
				if _, ok := parseObject(bm.msg); !ok {
					b.Fatal("not ok")
				}
			}
		})
	}
}

func BenchmarkStamp(b *testing.B) {
	prefix := stampPrefix("alice", "chat")
	for _, bm := range benchMessages {
		f, _ := parseObject(bm.msg)
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.msg)))
			for b.Loop() {
				stamp(prefix, bm.msg, f.typ != nil, 1700000000000)
			}
		})
	}
}

// BenchmarkRouteLocal measures the whole per-message path of a Router for
// a message from a connection to local ones, over real WebSockets: parse,
// validate, rate limit, stamp, queue to each recipient, and the ack queued
// to the sender. The socket writes happen on the recipients' own writer
// goroutines, concurrently; ns/op is the time the sender's reader spends.
func BenchmarkRouteLocal(b *testing.B) {
	for _, bc := range []struct {
		name       string
		recipients int
		ack        bool
		msg        string
	}{
		{"direct", 1, false, `{"to":"bob","text":"hello, how are you?"}`},
		{"direct-ack", 1, true, `{"to":"bob","text":"hello, how are you?","id":42}`},
		{"direct-3-devices", 3, false, `{"to":"bob","text":"hello, how are you?"}`},
		{"broadcast-10", 10, false, `{"text":"hello, everyone"}`},
		{"broadcast-100", 100, false, `{"text":"hello, everyone"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			n := newBenchNode(b)
			sender := n.conn(b, "alice")
			for range bc.recipients {
				n.conn(b, "bob")
			}
			perOp := int64(bc.recipients)
			if bc.ack {
				perOp++
			}
			msg := []byte(bc.msg)
			b.ReportAllocs()
			var ops int64
			for b.Loop() {
				n.r.handle(sender, msg)
				if ops++; ops%256 == 0 {
					// Keep the queues far from full: the readers run on the
					// same CPUs and would otherwise fall behind.
					b.StopTimer()
					n.waitRead(b, (ops-256)*perOp)
					b.StartTimer()
				}
			}
			b.StopTimer()
			n.waitRead(b, ops*perOp) // every frame was delivered
		})
	}
}

// benchNode is a Router behind an httptest server, with clients that read
// and count everything they receive.
type benchNode struct {
	r    *Router
	url  string
	read atomic.Int64 // frames read by all the clients
}

func newBenchNode(b *testing.B) *benchNode {
	b.Helper()
	r, err := New(Config{Node: "bench", RateLimit: 1e12, RateBurst: 1 << 30, OutboundQueue: 1 << 12, NoPresenceEvents: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	routerRunning()
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
		routerStopped(b)
	})
	return &benchNode{r: r, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws/chat"}
}

// conn connects user, starts a reader for it, and returns its server-side
// Conn.
func (n *benchNode) conn(b *testing.B, user string) *Conn {
	b.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(n.url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.Close() })
	if err := ws.WriteJSON(map[string]string{"type": "online", "user_id": user}); err != nil {
		b.Fatal(err)
	}
	var ready struct {
		ConnectionID string `json:"connection_id"`
	}
	if err := ws.ReadJSON(&ready); err != nil {
		b.Fatal(err)
	}
	go n.countFrames(bufio.NewReader(ws.UnderlyingConn()))
	n.r.mu.RLock()
	c := n.r.conns[ready.ConnectionID]
	n.r.mu.RUnlock()
	if c == nil {
		b.Fatalf("connection %s not found", ready.ConnectionID)
	}
	return c
}

// countFrames reads the server's (unmasked, unfragmented) frames from r and
// counts them, without allocating per frame, so that the benchmark's
// allocations are the server's.
func (n *benchNode) countFrames(r *bufio.Reader) {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:2]); err != nil {
			return
		}
		size := int64(hdr[1] & 0x7f)
		switch size {
		case 126:
			if _, err := io.ReadFull(r, hdr[:2]); err != nil {
				return
			}
			size = int64(binary.BigEndian.Uint16(hdr[:2]))
		case 127:
			if _, err := io.ReadFull(r, hdr[:8]); err != nil {
				return
			}
			size = int64(binary.BigEndian.Uint64(hdr[:8]))
		}
		if _, err := r.Discard(int(size)); err != nil {
			return
		}
		n.read.Add(1)
	}
}

// waitRead waits until the clients have read at least want frames.
func (n *benchNode) waitRead(b *testing.B, want int64) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.read.Load() < want {
		if time.Now().After(deadline) {
			n.r.mu.RLock()
			ev := 0
			for _, c := range n.r.conns {
				if c.evicted.Load() {
					ev++
				}
			}
			total := len(n.r.conns)
			n.r.mu.RUnlock()
			b.Fatalf("clients read %d frames, want %d (%d of %d connections evicted)", n.read.Load(), want, ev, total)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
