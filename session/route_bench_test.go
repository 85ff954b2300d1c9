package session

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
)

// BenchmarkRedisRoute routes broadcasts to 100 actions, each held by a
// connection on another node that is subscribed, in pipelines of 100,
// with and without the history a node replays after a broken
// subscription, and reports Redis's own time per script (INFO
// commandstats): the cost the history adds to one broadcast.
//
//	go test -run '^$' -bench RedisRoute$ ./session/
func BenchmarkRedisRoute(b *testing.B) {
	for _, history := range []bool{false, true} {
		b.Run("history="+strconv.FormatBool(history), func(b *testing.B) {
			srv := redistest.Start(b)
			ctx := context.Background()
			c, err := NewRedisClient(srv.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			s := NewRedisStore(c, RedisOptions{})
			defer s.Close()
			const actions = 100
			for _, node := range []string{"n1", "n2"} {
				if _, err := s.Heartbeat(ctx, node, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
			for i := range actions {
				a := "a" + strconv.Itoa(i)
				if _, err := s.Bind(ctx, Binding{ConnID: "c" + a, UserID: "u", Action: a, Node: "n2", ConnectedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			sub := c.PSubscribe(ctx, s.prefix+"ch:a:*")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				b.Fatal(err)
			}
			go func() {
				for range sub.Channel() { //nolint:revive // drain
				}
			}()
			frame := []byte(`{"type":"message","action":"a1","from":"u9999","data":"` + strings.Repeat("x", 64) + `"}`)
			m := Routed{Header: []byte("H"), Frame: frame, History: history}
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			const batch = 100
			for i := 0; i < b.N; i += batch {
				pipe := c.Pipeline()
				cmds := make([]*redis.Cmd, 0, batch)
				for j := i; j < i+batch && j < b.N; j++ {
					t := Target{Action: "a" + strconv.Itoa(j%actions)}
					cmds = append(cmds, s.Route(ctx, pipe, t, "n1", m, i == 0))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				for _, cmd := range cmds {
					if res, err := ParseRoute(cmd); err != nil || res.Reached != 1 {
						b.Fatalf("route: %+v %v", res, err)
					}
				}
			}
			b.StopTimer()
			stats, err := c.Info(ctx, "commandstats").Result()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(usecPerCall(stats, "evalsha", "eval"), "redis-µs/op")
			if history {
				used, err := c.MemoryUsage(ctx, s.historyKey(Target{Action: "a0"})).Result()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(used), "history-B/action")
			}
		})
	}
}
