package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
			c, s := startRouteBench(b)
			ctx := context.Background()
			const actions = 100
			for i := range actions {
				a := "a" + strconv.Itoa(i)
				if _, err := s.Bind(ctx, Binding{ConnID: "c" + a, UserID: "u", Action: a, Node: "n2", ConnectedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			drainPattern(b, c, s.prefix+"ch:a:*")
			frame := []byte(`{"type":"message","action":"a1","from":"u9999","data":"` + strings.Repeat("x", 64) + `"}`)
			m := Routed{Header: []byte("H"), Frame: frame, History: history}
			runRouteScripts(b, c, func(pipe redis.Pipeliner, j int, eval bool) *redis.Cmd {
				return s.Route(ctx, pipe, Target{Action: "a" + strconv.Itoa(j%actions)}, "n1", m, eval)
			}, func(cmd *redis.Cmd) error {
				if res, err := ParseRoute(cmd); err != nil || res.Reached != 1 {
					return fmt.Errorf("route: %+v %v", res, err)
				}
				return nil
			})
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
