package session

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
)

// TestRedisHistory: what a node reads back from a target's history is
// exactly what was published to it and taken by its subscription, after
// the position it gives, on a single Redis and on a cluster.
func TestRedisHistory(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	for _, tc := range []struct {
		name string
		url  string
	}{{"single", srv.URL()}, {"cluster", cl.URL()}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newRedisStore(t, tc.url, RedisOptions{})
			ctx := t.Context()
			for _, n := range []string{"n1", "n2", "n3"} {
				heartbeat(t, s, n, time.Minute)
			}
			// n2 and n3 hold connections of "hall" and of bob in it; only
			// n2 is subscribed, so n3 misses every message.
			for i, n := range []string{"n2", "n3"} {
				bind(t, s, Binding{ConnID: fmt.Sprintf("c%d", i), UserID: "bob", Action: "hall", Node: n, ConnectedAt: time.Now()})
			}
			hall, bob := Target{Action: "hall"}, Target{Action: "hall", User: "bob"}
			subscribeAll(t, s, s.Channel(hall, "n2"), s.Channel(bob, "n2"))

			route := func(t Target, frame string, history bool) RouteResult {
				pipe := s.c.Pipeline()
				cmd := s.Route(ctx, pipe, t, "n1", Routed{Header: []byte("H"), Frame: []byte(frame), History: history}, true)
				_, _ = pipe.Exec(ctx)
				r, err := ParseRoute(cmd)
				if err != nil {
					panic(err)
				}
				return r
			}
			for i := range 3 {
				if r := route(hall, fmt.Sprintf("b%d", i), true); r.Reached != 1 || r.Missed != 1 {
					t.Fatalf("broadcast %d: %+v, want 1 reached and 1 missed", i, r)
				}
			}
			route(hall, "not kept", false)
			route(bob, "to bob", true)

			p := readHistory(t, s, hall, "n2", "", 100)
			if got := frames(p); fmt.Sprint(got) != "[b0 b1 b2]" {
				t.Fatalf("n2's history of hall: %v, want [b0 b1 b2]", got)
			}
			if p.More || p.Last == "" || p.Last < p.Entries[2].ID {
				t.Errorf("page: last %q more %v, want the last entry scanned (its correction) and no more", p.Last, p.More)
			}
			if p.Entries[0].Header != "H" {
				t.Errorf("header %q, want H", p.Entries[0].Header)
			}
			if got := frames(readHistory(t, s, hall, "n2", p.Entries[0].ID, 100)); fmt.Sprint(got) != "[b1 b2]" {
				t.Errorf("after the first entry: %v, want [b1 b2]", got)
			}
			if got := frames(readHistory(t, s, hall, "n3", "", 100)); len(got) != 0 {
				t.Errorf("n3, whose subscription took nothing: %v, want none", got)
			}
			if got := frames(readHistory(t, s, hall, "n1", "", 100)); len(got) != 0 {
				t.Errorf("n1, the sender: %v, want none", got)
			}
			if got := frames(readHistory(t, s, bob, "n2", "", 100)); fmt.Sprint(got) != "[to bob]" {
				t.Errorf("n2's history of bob: %v, want [to bob]", got)
			}
			// Paging: two entries scanned per read.
			var all []string
			after := ""
			for range 10 {
				p := readHistory(t, s, hall, "n2", after, 2)
				all = append(all, frames(p)...)
				after = p.Last
				if !p.More {
					break
				}
			}
			if fmt.Sprint(all) != "[b0 b1 b2]" {
				t.Errorf("paged by two: %v, want [b0 b1 b2]", all)
			}
			// A direct message kept in no mailbox goes to the user's history.
			pipe := s.c.Pipeline()
			cmd := s.RouteDirect(ctx, pipe, nil, Direct{Action: "hall", User: "bob", Header: []byte("H"), Frame: []byte("direct")}, "n1", time.Now(), true)
			_, _ = pipe.Exec(ctx)
			if r, err := ParseDirect(cmd); err != nil || r.Reached != 1 || r.Missed != 1 {
				t.Fatalf("direct: %+v, %v; want 1 reached, 1 missed", r, err)
			}
			if got := frames(readHistory(t, s, bob, "n2", "", 100)); fmt.Sprint(got) != "[to bob direct]" {
				t.Errorf("n2's history of bob after a direct message: %v, want [to bob direct]", got)
			}
			ttl, err := s.c.PTTL(ctx, s.historyKey(hall)).Result()
			if err != nil || ttl <= 0 || ttl > HistoryTTL {
				t.Errorf("history TTL %v, %v; want within %v", ttl, err, HistoryTTL)
			}
		})
	}
}

func readHistory(t *testing.T, s *RedisStore, tg Target, node, after string, limit int) HistoryPage {
	t.Helper()
	p, err := s.ReadHistory(t.Context(), tg, node, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func frames(p HistoryPage) []string {
	var out []string
	for _, e := range p.Entries {
		out = append(out, e.Frame)
	}
	return out
}

// subscribeAll subscribes to chs (sharded on a cluster, one connection
// per channel) and drains them until the test ends.
func subscribeAll(t *testing.T, s *RedisStore, chs ...string) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	for _, ch := range chs {
		var ps *redis.PubSub
		if cc, ok := s.c.(*redis.ClusterClient); ok {
			ps = cc.SSubscribe(ctx, ch)
		} else {
			ps = s.c.Subscribe(ctx, ch)
		}
		t.Cleanup(func() { _ = ps.Close() })
		if _, err := ps.Receive(t.Context()); err != nil {
			t.Fatal(err)
		}
		go func() {
			for range ps.Channel() { //nolint:revive // drain
			}
		}()
	}
}

// TestHistoryLen: a history holds up to HistoryLength small messages, and
// about HistoryBytes of large ones (at least 16).
func TestHistoryLen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ frame, want int }{
		{0, 1000}, {200, 1000}, {4096, 1000}, {16384, 256}, {65536, 64}, {1 << 30, 16},
	} {
		if got := historyLen(tc.frame); got != tc.want {
			t.Errorf("historyLen(%d) = %d, want %d", tc.frame, got, tc.want)
		}
	}
}
