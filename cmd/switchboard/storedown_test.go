package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/routing"
)

// TestOnlineStoreDown: while Redis is down, online gets unavailable and
// close 1013 (try again later), never 1008, and leaves no binding behind;
// once Redis is back, the same client gets online.
func TestOnlineStoreDown(t *testing.T) {
	rs, ns := startCluster(t, 1)
	n := ns[0]
	rs.Stop()
	for _, path := range []string{"/ws", "/ws/chat"} {
		c := n.dial(t, path, nil)
		c.send(map[string]any{"type": "online", "action": "chat", "user_id": "alice"})
		m, err := c.read(30 * time.Second) // the store's timeout passes first
		if err != nil || m["type"] != "error" || m["code"] != routing.CodeUnavailable {
			t.Fatalf("%s: got %v, %v; want error unavailable", path, m, err)
		}
		_, err = c.readFrame(10 * time.Second)
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
			t.Fatalf("%s: got %v, want close 1013", path, err)
		}
	}
	rs.Restart()
	waitFor(t, 30*time.Second, "online once Redis is back", func() bool {
		c, err := n.tryDial("/ws", nil)
		if err != nil {
			return false
		}
		defer c.ws.Close()
		c.t = t
		c.send(map[string]any{"type": "online", "action": "chat", "user_id": "bob"})
		m, err := c.read(10 * time.Second)
		return err == nil && m["type"] == "ready"
	})
	users, err := n.s.store.ActionUsers(context.Background(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if u == "alice" {
			t.Fatalf("alice's refused online left a binding: %v", users)
		}
	}
}
