package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// failingBroker is a MemoryBroker whose Publish fails while fail is set, as
// a Redis broker does when Redis is down.
type failingBroker struct {
	*MemoryBroker
	fail atomic.Bool
}

func (b *failingBroker) Publish(ctx context.Context, e *Envelope) (Delivery, error) {
	if b.fail.Load() {
		return Delivery{}, fmt.Errorf("%w: test", ErrBrokerUnavailable)
	}
	return b.MemoryBroker.Publish(ctx, e)
}

// TestUnavailableWhenRoutingFails: a message that cannot reach the other
// nodes gets unavailable, whether the server routes it or a custom handler
// does through Deliver (and returns its error).
func TestUnavailableWhenRoutingFails(t *testing.T) {
	broker := &failingBroker{MemoryBroker: NewMemoryHub().Broker("n1")}
	r, err := New(Config{Node: "n1", Broker: broker})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Handle("typing", func(ctx context.Context, req *Request) error {
		_, err := req.Deliver(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	routerRunning()
	go func() { done <- r.Run(ctx) }()
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := r.Shutdown(sctx); err != nil {
			t.Error(err)
		}
		srv.Close()
		cancel()
		<-done
		routerStopped(t)
	})
	dial := func(user string) *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws/chat", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		if err := ws.WriteJSON(map[string]string{"type": "online", "user_id": user}); err != nil {
			t.Fatal(err)
		}
		if m := readNonEvent(t, ws); m["type"] != "ready" {
			t.Fatalf("got %v, want ready", m)
		}
		return ws
	}
	alice, bob := dial("alice"), dial("bob")

	broker.fail.Store(true)
	for _, msg := range []string{`{"text":"hi","id":1}`, `{"type":"typing","id":2}`} {
		if err := alice.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if m := readNonEvent(t, alice); m["type"] != "error" || m["code"] != CodeUnavailable {
			t.Errorf("%s: got %v, want error unavailable", msg, m)
		}
		// It did reach this node's connections.
		if m := readNonEvent(t, bob); m["from"] != "alice" {
			t.Errorf("%s: bob got %v", msg, m)
		}
	}
}

func readNonEvent(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] != "join" && m["type"] != "leave" {
			return m
		}
	}
}
