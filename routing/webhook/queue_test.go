package webhook_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/routing/webhook"
	"github.com/switchboard/switchboard/session"
)

// newQueueFunc returns a queue for node; queues of one test share their
// events. A limit > 0 asks for an exact limit (RedisQueue: one partition).
type newQueueFunc func(t *testing.T, node string, limit int) webhook.Queue

func TestMemoryQueue(t *testing.T) {
	t.Parallel()
	testQueue(t, func(_ *testing.T, _ string, limit int) webhook.Queue { return webhook.NewMemoryQueue(limit) })
}

func TestRedisQueue(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testQueue(t, redisQueues(srv.URL()))
	testRedisQueue(t, redisQueues(srv.URL()))
}

func TestRedisClusterQueue(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	testQueue(t, redisQueues(cl.URL()))
	testRedisQueue(t, redisQueues(cl.URL()))
}

// testLease is the lease of the Redis queues in tests.
const testLease = 600 * time.Millisecond

func redisQueues(url string) newQueueFunc {
	return func(t *testing.T, node string, limit int) webhook.Queue {
		t.Helper()
		c, err := session.NewRedisClient(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		cfg := webhook.RedisQueueConfig{Node: node, Prefix: "test:" + t.Name() + ":", LeaseTTL: testLease, Limit: limit}
		if limit > 0 {
			cfg.Partitions = 1
		}
		q, err := webhook.NewRedisQueue(c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
}

func add(ctx context.Context, q webhook.Queue, e webhook.Event) (int, error) {
	r, err := q.Push(ctx, []webhook.Op{{Kind: webhook.OpAdd, Event: e}})
	if err != nil {
		return 0, err
	}
	return r[0].Dropped, nil
}

func online(ctx context.Context, q webhook.Queue, e webhook.Event) (bool, int, error) {
	r, err := q.Push(ctx, []webhook.Op{{Kind: webhook.OpOnline, Event: e}})
	if err != nil {
		return false, 0, err
	}
	return r[0].Queued, r[0].Dropped, nil
}

func schedule(ctx context.Context, q webhook.Queue, e webhook.Event, due time.Time) error {
	_, err := q.Push(ctx, []webhook.Op{{Kind: webhook.OpSchedule, Event: e, Due: due}})
	return err
}

func ev(user string, n int) webhook.Event {
	return webhook.OfflineEvent(user, "chat", time.UnixMilli(int64(1e12+n)))
}

func readAll(t *testing.T, q webhook.Queue) []webhook.Event {
	t.Helper()
	evs, _, err := q.Read(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func ids(evs []webhook.Event) map[string]bool {
	m := map[string]bool{}
	for _, e := range evs {
		m[e.ID] = true
	}
	return m
}

// testQueue is the contract every Queue keeps.
func testQueue(t *testing.T, newQueue newQueueFunc) {
	ctx := context.Background()
	t.Run("AddReadAck", func(t *testing.T) {
		q := newQueue(t, "n1", 0)
		var sent []webhook.Event
		for i := range 20 {
			e := ev(fmt.Sprint("u", i%4), i)
			if _, err := add(ctx, q, e); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, e)
		}
		got := readAll(t, q)
		if len(got) != len(sent) {
			t.Fatalf("Read returned %d events, want %d", len(got), len(sent))
		}
		// In order per user and action, and as queued.
		next := map[string]int{}
		for _, g := range got {
			var want webhook.Event
			for i := next[g.User]; i < len(sent); i++ {
				if sent[i].User == g.User {
					want, next[g.User] = sent[i], i+1
					break
				}
			}
			if g.ID != want.ID || string(g.Body) != string(want.Body) || !g.At.Equal(want.At) || g.Action != "chat" || g.Type != webhook.TypeUserOffline {
				t.Fatalf("got %+v, want %+v", g, want)
			}
		}
		if again := readAll(t, q); len(again) != 0 {
			t.Fatalf("a second Read returned %d events already handed out", len(again))
		}
		if n, oldest, err := q.Stats(ctx); err != nil || n != 20 || oldest.IsZero() || time.Since(oldest) > time.Minute {
			t.Fatalf("Stats = %d, %v, %v; want 20 queued, just now", n, oldest, err)
		}
		for _, g := range got {
			if err := q.Ack(ctx, g); err != nil {
				t.Fatal(err)
			}
		}
		if n, oldest, err := q.Stats(ctx); err != nil || n != 0 || !oldest.IsZero() {
			t.Fatalf("Stats after Ack = %d, %v, %v; want empty", n, oldest, err)
		}
	})
	t.Run("OnlineCancelsScheduledOffline", func(t *testing.T) {
		q := newQueue(t, "n1", 0)
		if err := schedule(ctx, q, ev("alice", 1), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		on := webhook.OnlineEvent(session.Binding{ConnID: "c", UserID: "alice", Action: "chat", Node: "n1"}, time.Now())
		queued, _, err := online(ctx, q, on)
		if err != nil || queued {
			t.Fatalf("Online with an offline pending = %v, %v; want cancelled", queued, err)
		}
		if got := readAll(t, q); len(got) != 0 {
			t.Fatalf("Read returned %d events, want none", len(got))
		}
		queued, _, err = online(ctx, q, on)
		if err != nil || !queued {
			t.Fatalf("Online with nothing pending = %v, %v; want queued", queued, err)
		}
		if got := readAll(t, q); len(got) != 1 || got[0].ID != on.ID {
			t.Fatalf("Read = %v, want the user.online", got)
		}
	})
	t.Run("ScheduledWhenDue", func(t *testing.T) {
		q := newQueue(t, "n1", 0)
		early, late := ev("bob", 1), ev("bob", 2)
		if err := schedule(ctx, q, early, time.Now().Add(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if err := schedule(ctx, q, ev("carol", 3), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := schedule(ctx, q, late, time.Now().Add(300*time.Millisecond)); err != nil { // replaces early
			t.Fatal(err)
		}
		if got := readAll(t, q); len(got) != 0 {
			t.Fatalf("Read before due = %d events, want none", len(got))
		}
		var got []webhook.Event
		waitFor(t, 10*time.Second, "the due user.offline", func() bool {
			got = append(got, readAll(t, q)...)
			return len(got) > 0
		})
		if len(got) != 1 || got[0].ID != late.ID || string(got[0].Body) != string(late.Body) {
			t.Fatalf("Read = %+v, want only the replacing event", got)
		}
	})
	t.Run("PushAppliesABatchInOrder", func(t *testing.T) {
		q := newQueue(t, "n1", 0)
		b := session.Binding{ConnID: "c", UserID: "frank", Action: "chat", Node: "n1"}
		off, on1, other, on2 := ev("frank", 1), webhook.OnlineEvent(b, time.Now()), ev("gina", 2), webhook.OnlineEvent(b, time.Now())
		res, err := q.Push(ctx, []webhook.Op{
			{Kind: webhook.OpSchedule, Event: off, Due: time.Now().Add(time.Hour)},
			{Kind: webhook.OpOnline, Event: on1}, // cancels off
			{Kind: webhook.OpAdd, Event: other},
			{Kind: webhook.OpOnline, Event: on2}, // nothing to cancel any more
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []webhook.Pushed{{}, {}, {Queued: true}, {Queued: true}}
		if fmt.Sprint(res) != fmt.Sprint(want) {
			t.Fatalf("Push = %v, want %v", res, want)
		}
		got := readAll(t, q)
		if len(got) != 2 || !ids(got)[other.ID] || !ids(got)[on2.ID] {
			t.Fatalf("Read = %d events, want gina's and the second user.online", len(got))
		}
	})
	t.Run("LimitDropsOldest", func(t *testing.T) {
		q := newQueue(t, "n1", 3)
		var sent []webhook.Event
		dropped := 0
		for i := range 5 {
			e := ev("dave", i)
			d, err := add(ctx, q, e)
			if err != nil {
				t.Fatal(err)
			}
			dropped += d
			sent = append(sent, e)
		}
		if dropped != 2 {
			t.Fatalf("dropped %d, want 2", dropped)
		}
		got := readAll(t, q)
		if len(got) != 3 || got[0].ID != sent[2].ID || got[2].ID != sent[4].ID {
			t.Fatalf("Read = %d events, want the 3 newest", len(got))
		}
	})
}

// testRedisQueue: what a shared queue adds, with two nodes.
func testRedisQueue(t *testing.T, newQueue newQueueFunc) {
	ctx := context.Background()
	t.Run("OneNodePerPartitionDeadNodeTakenOver", func(t *testing.T) {
		a, b := newQueue(t, "a", 0), newQueue(t, "b", 0)
		readAll(t, a) // a takes every partition's lease
		var sent []webhook.Event
		for i := range 30 {
			e := ev(fmt.Sprint("u", i), i)
			if _, err := add(ctx, b, e); err != nil { // any node may queue
				t.Fatal(err)
			}
			sent = append(sent, e)
		}
		gotA := readAll(t, a)
		if len(gotA) != 30 {
			t.Fatalf("a read %d events, want 30", len(gotA))
		}
		if gotB := readAll(t, b); len(gotB) != 0 {
			t.Fatalf("b read %d events while a holds the partitions", len(gotB))
		}
		for _, e := range gotA[:10] {
			if err := a.Ack(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		// a dies without releasing: b takes over once the leases expire
		// and gets every unacknowledged event, those a held included.
		var gotB []webhook.Event
		start := time.Now()
		waitFor(t, 10*time.Second, "b taking over", func() bool {
			gotB = append(gotB, readAll(t, b)...)
			return len(gotB) >= 20
		})
		if took := time.Since(start); took > 3*testLease {
			t.Errorf("takeover took %v, want about the lease (%v)", took, testLease)
		}
		want := ids(gotA[10:])
		if g := ids(gotB); len(g) != 20 || len(gotB) != 20 {
			t.Fatalf("b read %d events, want the 20 unacknowledged", len(gotB))
		} else {
			for id := range want {
				if !g[id] {
					t.Fatalf("event %s lost", id)
				}
			}
		}
	})
	t.Run("ReleaseHandsOverAtOnce", func(t *testing.T) {
		a, b := newQueue(t, "a", 0), newQueue(t, "b", 0)
		readAll(t, a)
		if _, err := add(ctx, a, ev("erin", 1)); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, b); len(got) != 1 {
			t.Fatalf("b read %d events right after a released, want 1", len(got))
		}
	})
}
