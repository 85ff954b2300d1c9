package main

import "testing"

func TestSmoke(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	a.expectEvent("join", "bob")
	a.send(map[string]any{"text": "hi", "to": "bob", "id": 1})
	m := b.expect("message")
	t.Log(m)
	t.Log(a.expect("ack"))
}
