package main

import (
	"testing"

	"github.com/switchboard/switchboard/internal/redistest"
)

// startCluster runs n nodes sharing one real Redis.
func startCluster(t *testing.T, n int, args ...string) (*redistest.Server, []*testNode) {
	t.Helper()
	rs := redistest.Start(t)
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, append([]string{"--redis-url", rs.URL(), "--heartbeat-ttl", "2s"}, args...)...)
	}
	return rs, nodes
}

func TestClusterSmoke(t *testing.T) {
	_, ns := startCluster(t, 2)
	a := ns[0].online(t, "chat", "alice")
	b := ns[1].online(t, "chat", "bob")
	a.expectEvent("join", "bob")
	a.send(map[string]any{"text": "hi", "to": "bob", "id": 1})
	m := b.expect("message")
	if m["from"] != "alice" || m["text"] != "hi" {
		t.Fatalf("got %v", m)
	}
	if ack := a.expect("ack"); ack["delivered"] != 1.0 {
		t.Fatalf("ack %v", ack)
	}
	b.send(map[string]any{"text": "room", "id": "x"})
	if m := a.expect("message"); m["text"] != "room" {
		t.Fatalf("got %v", m)
	}
	if ack := b.expect("ack"); ack["delivered"] != 1.0 {
		t.Fatalf("ack %v", ack)
	}
	a.send(map[string]any{"type": "presence"})
	t.Log(a.expect("presence"))
	a.send(map[string]any{"text": "x", "to": "nobody", "id": 2})
	a.expectError("user_offline")
}
