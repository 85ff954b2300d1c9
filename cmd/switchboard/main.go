// Command switchboard runs the Switchboard WebSocket server.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	// go-redis's logger is process-wide: set here, by the process, not by
	// run. Its messages (dial retries during an outage, many per second)
	// are dropped; the store and the broker log each change of state once.
	redis.SetLogger(quietRedis{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
