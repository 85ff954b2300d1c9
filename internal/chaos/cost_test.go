package chaos

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// Routing a message costs Redis the same whatever the number of the
// recipient's connections: the route hash has one field per node, and the
// script's time per call (INFO commandstats) for a user with many
// connections stays within a small factor of a user with one.
func TestRoutingCostFlat(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const action = "cost"
	crowdConns := 2000
	if testing.Short() {
		crowdConns = 200
	}
	// One user, many connections on n0, as many devices or tabs.
	start := time.Now()
	crowd := dialCrowd(t, c.nodes[0], action, "crowd", crowdConns, true)
	t.Logf("%d connections of one user online in %v", crowdConns, time.Since(start).Round(time.Millisecond))
	solo := dialOnline(t, c.nodes[0], action, "solo")
	sender := dialOnline(t, c.nodes[1], action, "sender")
	c.extra = append(c.extra, crowd...)
	c.extra = append(c.extra, solo, sender)
	c.expectPresence(20 * time.Second)

	rdb := c.redis.Client()
	ctx := context.Background()
	route, err := rdb.HGetAll(ctx, prefix+"uroute:"+action+"|crowd").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(route) != 1 || route["n0"] != strconv.Itoa(crowdConns) {
		t.Fatalf("route hash of the user with %d connections: %v, want one field n0=%d", crowdConns, route, crowdConns)
	}

	// Rounds alternate, and the cheapest round of each kind counts: the
	// machine's load only ever adds time.
	const rounds, perRound = 3, 30
	sent := map[string]int{}
	perCall := func(to string, want int) float64 {
		t.Helper()
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s := &stream{name: "sender>" + to, from: sender, to: to}
		s.sentAt = make([]time.Time, sent[to]) // numbering goes on
		for range perRound {
			s.send()
			time.Sleep(sendEvery) // under the rate limit
		}
		sent[to] += perRound
		for k := sent[to] - perRound + 1; k <= sent[to]; k++ {
			id := s.name + "#" + strconv.Itoa(k)
			var a answer
			waitFor(t, 20*time.Second, "the answer to "+id, func() bool {
				var ok bool
				a, ok = sender.answerTo(id)
				return ok
			})
			if a.code != "" || a.delivered != want {
				t.Fatalf("%s: answer %+v, want delivered %d", id, a, want)
			}
		}
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		// Every script the nodes ran in the round: mostly the route
		// script, plus the odd heartbeat-time reap.
		m := regexp.MustCompile(`cmdstat_evalsha:calls=(\d+),usec=\d+,usec_per_call=([\d.]+)`).FindStringSubmatch(info)
		if m == nil {
			t.Fatalf("no evalsha in commandstats:\n%s", info)
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		t.Logf("to %s (%d connections): %s script calls, %.2f µs per call", to, want, m[1], v)
		return v
	}
	big, small := math.Inf(1), math.Inf(1)
	for range rounds {
		big = min(big, perCall("crowd", crowdConns))
		small = min(small, perCall("solo", 1))
	}
	ratio := big / small
	t.Logf("Redis time per routed message: %.2f µs to %d connections, %.2f µs to 1: ratio %.2f", big, crowdConns, small, ratio)
	if ratio > 3 {
		t.Errorf("routing to a user with %d connections costs Redis %.1fx a user with one, want < 3x", crowdConns, ratio)
	}
	for _, cl := range crowd {
		waitFor(t, 20*time.Second, "the crowd's connections to receive every message", func() bool {
			return len(cl.received("sender>crowd")) == rounds*perRound
		})
	}
	c.finish()
}
