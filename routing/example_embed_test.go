package routing_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/routing"
	"github.com/switchboard/switchboard/session"
)

// A complete embedding of Switchboard with Redis, through the Router's
// lifecycle: New (no I/O), Prepare and Run (background work: delivery from
// other nodes, heartbeat, clean-up of dead nodes; without Run, online is
// refused and the log says so), serving, and Shutdown.
func Example_embedding() {
	// A private redis-server for this example; yours is your REDIS_URL.
	redisURL, stopRedis, err := redistest.StartExample()
	if err != nil {
		log.Fatal(err)
	}
	defer stopRedis()

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := session.NewRedisClient(redisURL) // no I/O yet
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	const node = "node-1" // unique in the cluster
	store := session.NewRedisStore(client, session.RedisOptions{Prefix: "example:"})
	broker, err := routing.NewRedisBroker(store, routing.RedisBrokerConfig{Node: node, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}

	// 1. New: configuration only.
	r, err := routing.New(routing.Config{Node: node, Store: store, Broker: broker, Logger: logger})
	if err != nil {
		log.Fatal(err)
	}

	// 2. Prepare and Run, before serving. Run returns when its context ends.
	runCtx, stopRun := context.WithCancel(context.Background())
	r.Prepare(runCtx)
	running := make(chan error, 1)
	go func() { running <- r.Run(runCtx) }()

	// 3. Serve /ws and /ws/{action}, through the Router's listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", r)
	mux.Handle("/ws/", r)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	go func() { _ = srv.Serve(r.Listener(ln)) }()

	url := "http://" + ln.Addr().String()
	alice := connect(url, "alice")
	defer alice.Close()
	bob := connect(url, "bob")
	defer bob.Close()
	send(alice, `{"text":"hello bob","to":"bob"}`)
	m := next(bob)
	fmt.Println(m["from"], "to bob:", m["text"])

	// 4. Shutdown: stop accepting, close every WebSocket with 1001 and
	// remove its bindings, then stop Run, then close the store.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := r.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	stopRun()
	<-running
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}

	// Output:
	// alice to bob: hello bob
}
