package main

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/routing"
)

// TestAmbiguousObjectsRefused: objects that decoders read differently (a
// name twice, a protocol name in another case or with escapes) are refused
// with invalid_json and reach nobody, before and after ready.
func TestAmbiguousObjectsRefused(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	c := n.online(t, "chat", "carol")
	for _, frame := range []string{
		`{"To":"bob","text":"a Go client reads this as private"}`,
		`{"type":"join","type":"message","user_id":"mallory"}`,
		`{"to":"bob","to":"carol"}`,
		`{"t\u006f":"bob"}`,
		`{"TYPE":"leave","id":1}`,
		`{"ſeq":1}`,
		`{"text":"a","text":"b","id":"x"}`,
	} {
		a.sendRaw(frame)
		if m := a.expectError(routing.CodeInvalidJSON); m["id"] != nil {
			t.Errorf("%s: error %v echoes the id of an ambiguous object", frame, m)
		}
	}
	a.sendRaw(`{"to":"bob","text":"fine","id":2}`)
	a.expect("ack")
	if m := b.expect("message"); m["text"] != "fine" {
		t.Fatalf("bob got %v, want the unambiguous message", m)
	}
	c.expectNothing(100 * time.Millisecond)

	// Before ready, the refusal closes the connection.
	for _, frame := range []string{
		`{"type":"online","action":"chat","user_id":"x","user_id":"y"}`,
		`{"type":"online","action":"chat","User_ID":"x"}`,
		`{"type":"online","type":"message","action":"chat"}`,
	} {
		d := n.dial(t, "/ws", nil)
		d.sendRaw(frame)
		d.expectError(routing.CodeInvalidJSON)
		d.expectClose(websocket.ClosePolicyViolation)
	}
}
