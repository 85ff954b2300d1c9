package session_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/switchboard/switchboard/session"
)

// A user's first connection in an action owes a `join`, the last one to
// leave a `leave`; every Store reports both.
func ExampleStore() {
	ctx := context.Background()
	var s session.Store = session.NewMemoryStore()

	first, _ := s.Bind(ctx, session.Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1"})
	fmt.Println("c1 first:", first)
	first, _ = s.Bind(ctx, session.Binding{ConnID: "c2", UserID: "alice", Action: "chat", Node: "n2"})
	fmt.Println("c2 first:", first)

	users, _ := s.ActionUsers(ctx, "chat")
	fmt.Println("online:", users)

	r, _ := s.Unbind(ctx, "c1")
	fmt.Println("c1 last:", r.Last)
	r, _ = s.Unbind(ctx, "c2")
	fmt.Println("c2 last:", r.Last)
	// Output:
	// c1 first: true
	// c2 first: false
	// online: [alice]
	// c1 last: false
	// c2 last: true
}

// A node on Redis: beat first, then bind; reap the nodes that stopped
// beating. (Not run: it needs a Redis.)
func ExampleNewRedisStore() {
	ctx := context.Background()
	client, err := session.NewRedisClient("redis://localhost:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // the store does not own the client

	store := session.NewRedisStore(client, session.RedisOptions{}) // prefix "sb:", 3 s per call
	if _, err := store.Heartbeat(ctx, "node-1", 15*time.Second); err != nil {
		log.Fatal(err) // errors.Is(err, session.ErrUnavailable) when Redis is down
	}
	first, err := store.Bind(ctx, session.Binding{
		ConnID: "c1", UserID: "alice", Action: "chat", Node: "node-1", ConnectedAt: time.Now(),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("join owed:", first)

	removed, err := store.Reap(ctx) // bindings of nodes whose heartbeat expired
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range removed {
		fmt.Println("gone:", r.ConnID, "leave owed:", r.Last)
	}
}

// REDIS_URL naming a Redis Cluster by several seeds.
func ExampleNewRedisClient_cluster() {
	client, err := session.NewRedisClient("redis://10.0.0.1:7000,redis://10.0.0.2:7000,redis://10.0.0.3:7000")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	fmt.Println("cluster:", session.IsCluster(client))
	// Output: cluster: true
}
