package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
)

// BenchmarkRedisRouteDirect routes direct messages to 1,000 users, each
// bound once on another node that is subscribed, in pipelines of 100, and
// reports Redis's own time per script (INFO commandstats, evalsha): the
// cost the mailbox adds to one routed message, independent of the client.
//
//	go test -run '^$' -bench RedisRouteDirect ./session/
func BenchmarkRedisRouteDirect(b *testing.B) {
	for _, tc := range []struct {
		name string
		mbox bool
		id   bool
	}{{"mailbox=off", false, false}, {"mailbox=on", true, false}, {"mailbox=on/id", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			c, s := startRouteBench(b)
			ctx := context.Background()
			var mb *RedisMailbox
			if tc.mbox {
				mb = NewRedisMailbox(c, "", MailboxOptions{})
			}
			const users = 1000
			for i := range users {
				u := "u" + strconv.Itoa(i)
				if _, err := s.Bind(ctx, Binding{ConnID: "c" + u, UserID: u, Action: "chat", Node: "n2", ConnectedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			// Node n2 listens on every channel of the action (PUBLISH then
			// counts a receiver, as in production).
			drainPattern(b, c, s.prefix+"ch:u:chat|*")
			body := []byte(`{"type":"message","action":"chat","from":"u9999","to":"u1","data":"` + strings.Repeat("x", 64) + `"`)
			header := []byte("H")
			frame := append(append([]byte{}, body...), `,"seq":`...)
			if !tc.mbox {
				frame = append(append([]byte{}, body...), '}')
			}
			runRouteScripts(b, c, func(pipe redis.Pipeliner, j int, eval bool) *redis.Cmd {
				d := Direct{Action: "chat", User: "u" + strconv.Itoa(j%users), Sender: "u9999", Header: header, Frame: frame}
				if tc.id {
					d.ID = strconv.Itoa(j)
				}
				return s.RouteDirect(ctx, pipe, mb, d, "n1", time.Now(), eval)
			}, func(cmd *redis.Cmd) error {
				if res, err := ParseDirect(cmd); err != nil || res.Reached != 1 {
					return fmt.Errorf("route: %+v %v", res, err)
				}
				return nil
			})
		})
	}
}

// startRouteBench starts a private Redis for a route script benchmark,
// with nodes n1 and n2 beating.
func startRouteBench(b *testing.B) (redis.UniversalClient, *RedisStore) {
	srv := redistest.Start(b)
	c, err := NewRedisClient(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	s := NewRedisStore(c, RedisOptions{})
	b.Cleanup(func() { _ = s.Close() })
	for _, node := range []string{"n1", "n2"} {
		if _, err := s.Heartbeat(context.Background(), node, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	return c, s
}

// drainPattern subscribes to the channels matching pattern, as a node
// would, and reads them until the benchmark ends.
func drainPattern(b *testing.B, c redis.UniversalClient, pattern string) {
	ctx := context.Background()
	sub := c.PSubscribe(ctx, pattern)
	b.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil {
		b.Fatal(err)
	}
	go func() {
		for range sub.Channel() { //nolint:revive // drain
		}
	}()
}

// runRouteScripts runs b.N scripts queued by queue (j is the message's
// number; eval on the first pipeline, whose EVALSHA may not be loaded yet)
// in pipelines of 100, checks each answer, and reports Redis's own time
// per script (INFO commandstats).
func runRouteScripts(b *testing.B, c redis.UniversalClient, queue func(pipe redis.Pipeliner, j int, eval bool) *redis.Cmd, check func(*redis.Cmd) error) {
	ctx := context.Background()
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	const batch = 100
	for i := 0; i < b.N; i += batch {
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, 0, batch)
		for j := i; j < i+batch && j < b.N; j++ {
			cmds = append(cmds, queue(pipe, j, i == 0))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		for _, cmd := range cmds {
			if err := check(cmd); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	stats, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(usecPerCall(stats, "evalsha", "eval"), "redis-µs/op")
}

// usecPerCall is the mean of usec_per_call of the named commands in an
// INFO commandstats reply, weighted by calls.
func usecPerCall(info string, names ...string) float64 {
	var calls, usec float64
	for _, line := range strings.Split(info, "\n") {
		for _, n := range names {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+n+":")
			if !ok {
				continue
			}
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				f, _ := strconv.ParseFloat(v, 64)
				switch k {
				case "calls":
					calls += f
				case "usec":
					usec += f
				}
			}
		}
	}
	if calls == 0 {
		return 0
	}
	return usec / calls
}
