package routing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/routing"
)

// Custom message types let a Go program that embeds Switchboard handle a
// client `type` itself: here "typing" is delivered like a message and
// answered with a count, "read" is refused with a code of the program's
// own, and the types the server uses cannot be taken over.
func ExampleRouter_Handle() {
	r, err := routing.New(routing.Config{Node: "example"})
	if err != nil {
		log.Fatal(err)
	}

	// Deliver routes the message as an ordinary one would be: stamped with
	// from, action and ts, to the `to` user or else to the whole action.
	// The handler decides what the sender gets back.
	err = r.Handle("typing", func(ctx context.Context, req *routing.Request) error {
		n, err := req.Deliver(ctx)
		if err != nil {
			return err // the client gets invalid_to, or unavailable if other nodes were unreachable
		}
		return req.Reply(map[string]any{"type": "typing_sent", "delivered": n})
	})
	if err != nil {
		log.Fatal(err)
	}

	// A *routing.Error refuses the message: the client gets an error frame
	// with its code and message (and the message's id). Any other error is
	// logged and reaches the client as "internal".
	err = r.Handle("read", func(ctx context.Context, req *routing.Request) error {
		return &routing.Error{Code: "read_disabled", Message: "read receipts are turned off"}
	})
	if err != nil {
		log.Fatal(err)
	}

	fmt.Println(r.Handle("ack", func(context.Context, *routing.Request) error { return nil }))

	// Serve it, as cmd/switchboard does on /ws and /ws/{action}.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	srv := httptest.NewServer(r)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = r.Shutdown(sctx)
		srv.Close()
		cancel()
		<-done
	}()

	alice := connect(srv.URL, "alice")
	defer alice.Close()
	bob := connect(srv.URL, "bob")
	defer bob.Close()

	send(alice, `{"type":"typing","to":"bob","state":"started"}`)
	m := next(bob)
	fmt.Printf("bob got %s from %s: %s\n", m["type"], m["from"], m["state"])
	fmt.Println("alice got", raw(alice))

	send(alice, `{"type":"read","id":7}`)
	fmt.Println("alice got", raw(alice))

	// Output:
	// routing: type "ack" is reserved
	// bob got typing from alice: started
	// alice got {"delivered":1,"type":"typing_sent"}
	// alice got {"type":"error","code":"read_disabled","message":"read receipts are turned off","id":7}
}

// connect opens a WebSocket on the chat action and goes online as user.
func connect(url, user string) *websocket.Conn {
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(url, "http")+"/ws/chat", nil)
	if err != nil {
		log.Fatal(err)
	}
	send(ws, `{"type":"online","user_id":"`+user+`"}`)
	if m := next(ws); m["type"] != "ready" {
		log.Fatalf("got %v, want ready", m)
	}
	return ws
}

func send(ws *websocket.Conn, msg string) {
	if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		log.Fatal(err)
	}
}

// raw returns the next frame as sent, skipping join and leave events.
func raw(ws *websocket.Conn) string {
	for {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := ws.ReadMessage()
		if err != nil {
			log.Fatal(err)
		}
		var m struct{ Type string }
		if err := json.Unmarshal(b, &m); err != nil {
			log.Fatal(err)
		}
		if m.Type != "join" && m.Type != "leave" {
			return string(b)
		}
	}
}

// next returns the next frame decoded, skipping join and leave events.
func next(ws *websocket.Conn) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw(ws)), &m); err != nil {
		log.Fatal(err)
	}
	return m
}
