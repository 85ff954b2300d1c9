package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// moderationSetups runs a test on one node in memory and on three nodes
// over one Redis.
func moderationSetups(t *testing.T, args ...string) map[string][]*testNode {
	t.Helper()
	single := []*testNode{startNode(t, append([]string{"--admin-token", testAdminToken}, args...)...)}
	_, three := startCluster(t, 3, append([]string{"--admin-token", testAdminToken}, args...)...)
	return map[string][]*testNode{"memory": single, "redis-3-nodes": three}
}

// tryOnline dials n and sends online; it returns the first answer.
func tryOnline(t *testing.T, n *testNode, action, user string) (*client, map[string]any) {
	t.Helper()
	c := n.dial(t, "/ws", nil)
	c.name = user
	c.send(map[string]any{"type": "online", "action": action, "user_id": user})
	return c, c.next()
}

// TestMaxConnectionsPerUser: N+1 connections of one user racing in, spread
// over the nodes: exactly N get ready, the other gets too_many_connections
// and close 1008, and the N stay.
func TestMaxConnectionsPerUser(t *testing.T) {
	const limit = 3
	for name, ns := range moderationSetups(t, "--max-connections-per-user", fmt.Sprint(limit)) {
		t.Run(name, func(t *testing.T) {
			reps := 20
			if testing.Short() {
				reps = 3
			}
			for rep := range reps {
				user := fmt.Sprintf("u%d", rep)
				var mu sync.Mutex
				var ready, refused []*client
				var wg sync.WaitGroup
				for i := range limit + 1 {
					wg.Go(func() {
						c, m := tryOnline(t, ns[i%len(ns)], []string{"a", "b"}[i%2], user)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case m["type"] == "ready":
							ready = append(ready, c)
						case m["type"] == "error" && m["code"] == "too_many_connections":
							refused = append(refused, c)
						default:
							t.Errorf("rep %d: got %v", rep, m)
						}
					})
				}
				wg.Wait()
				if len(ready) != limit || len(refused) != 1 {
					t.Fatalf("rep %d: %d ready, %d refused; want %d and 1", rep, len(ready), len(refused), limit)
				}
				refused[0].expectClose(websocket.ClosePolicyViolation)
				for _, c := range ready {
					c.send(map[string]any{"type": "ping", "id": 1})
					c.expect("pong")
				}
				body := mustCall(t, ns[0], "GET", "/api/users/"+user, "")
				if conns, _ := body["connections"].([]any); len(conns) != limit {
					t.Fatalf("rep %d: the store holds %d connections of the user, want %d", rep, len(conns), limit)
				}
				for _, c := range ready {
					c.ws.Close()
				}
			}
		})
	}
}

// TestBan: a ban disconnects the user everywhere with status banned, and
// online is refused until it expires or is lifted.
func TestBan(t *testing.T) {
	for name, ns := range moderationSetups(t) {
		t.Run(name, func(t *testing.T) {
			last := ns[len(ns)-1]
			var victims []*client
			for i, n := range ns {
				victims = append(victims, n.online(t, []string{"chat", "lobby"}[i%2], "mallory"))
			}
			bystander := last.online(t, "chat", "bob")
			body := mustCall(t, ns[0], "PUT", "/api/users/mallory/ban", `{"duration":"1h","reason":"spam"}`)
			if body["banned"] != true || body["reason"] != "spam" || body["until"] == "" {
				t.Fatalf("PUT ban = %v", body)
			}
			if n, _ := body["disconnected"].(float64); int(n) != len(victims) {
				t.Errorf("disconnected = %v, want %d", body["disconnected"], len(victims))
			}
			for _, v := range victims {
				m := v.expect("status")
				if m["status"] != "banned" || m["reason"] != "spam" {
					t.Errorf("status = %v", m)
				}
				v.expectClose(websocket.ClosePolicyViolation)
			}
			for _, n := range ns {
				c, m := tryOnline(t, n, "chat", "mallory")
				if m["type"] != "error" || m["code"] != "banned" {
					t.Fatalf("online while banned: %v", m)
				}
				c.expectClose(websocket.ClosePolicyViolation)
			}
			got := mustCall(t, last, "GET", "/api/users/mallory/ban", "")
			if got["banned"] != true || got["reason"] != "spam" {
				t.Errorf("GET ban = %v", got)
			}
			if u := mustCall(t, last, "GET", "/api/users/mallory", ""); u["banned"] != true {
				t.Errorf("GET user = %v, want banned true", u)
			}
			bystander.send(map[string]any{"type": "ping", "id": 1})
			bystander.expect("pong")

			mustCall(t, ns[0], "DELETE", "/api/users/mallory/ban", "")
			ns[0].online(t, "chat", "mallory")

			// A short ban lets the user in once it has expired.
			mustCall(t, ns[0], "PUT", "/api/users/eve/ban", `{"duration":"300ms"}`)
			waitFor(t, 5*time.Second, "the ban to expire", func() bool {
				return mustCall(t, last, "GET", "/api/users/eve/ban", "")["banned"] == false
			})
			last.online(t, "chat", "eve")
		})
	}
}

// TestBlock: a blocked sender's direct messages are not delivered, and its
// answer is the one for an offline recipient; broadcasts are untouched.
func TestBlock(t *testing.T) {
	for name, ns := range moderationSetups(t) {
		t.Run(name, func(t *testing.T) {
			alice := ns[0].online(t, "chat", "alice")
			mallory := ns[len(ns)-1].online(t, "chat", "mallory")
			alice.expectEvent("join", "mallory")
			alice.send(map[string]any{"type": "block", "user_id": "mallory", "id": "b1"})
			if m := alice.expect("blocks"); fmt.Sprint(m["users"]) != "[mallory]" || m["id"] != "b1" {
				t.Fatalf("block answer = %v", m)
			}
			// What an offline recipient's sender sees, for comparison.
			mallory.send(map[string]any{"text": "x", "to": "nobody", "id": 1})
			offline := mallory.next()
			mallory.send(map[string]any{"text": "hi", "to": "alice", "id": 2})
			blocked := mallory.next()
			delete(offline, "id")
			delete(offline, "to")
			delete(offline, "seq")
			delete(blocked, "id")
			delete(blocked, "to")
			delete(blocked, "seq")
			if fmt.Sprint(offline) != fmt.Sprint(blocked) {
				t.Errorf("blocked sender got %v, an offline recipient's sender %v", blocked, offline)
			}
			mallory.send(map[string]any{"text": "to all", "id": 3})
			mallory.expect("ack")
			if m := alice.expect("message"); m["text"] != "to all" {
				t.Fatalf("alice got %v, want the broadcast only", m)
			}
			// Nothing of the blocked sender is kept in alice's mailbox either.
			if mb := mustCall(t, ns[0], "GET", "/api/users/alice/mailbox?action=chat", ""); fmt.Sprint(mb["messages"]) != "[]" {
				t.Fatalf("alice's mailbox holds %v, want nothing", mb["messages"])
			}
			// Through the API too, and unblocking lets messages through again.
			if b := mustCall(t, ns[0], "GET", "/api/users/alice/blocks", ""); fmt.Sprint(b["blocks"]) != "[mallory]" {
				t.Errorf("GET blocks = %v", b)
			}
			mustCall(t, ns[0], "DELETE", "/api/users/alice/blocks/mallory", "")
			mallory.send(map[string]any{"text": "again", "to": "alice", "id": 4})
			if m := mallory.expect("ack"); m["delivered"] != 1.0 {
				t.Fatalf("ack after unblock = %v", m)
			}
			if m := alice.expect("message"); m["text"] != "again" {
				t.Fatalf("alice got %v", m)
			}
			mustCall(t, ns[0], "PUT", "/api/users/alice/blocks/mallory", "")
			mallory.send(map[string]any{"text": "blocked again", "to": "alice"})
			alice.expectNothing(300 * time.Millisecond)
		})
	}
}
