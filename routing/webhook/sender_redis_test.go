package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
	"github.com/switchboard/switchboard/routing/webhook"
	"github.com/switchboard/switchboard/session"
)

// crashing is a queue whose node dies without releasing its share.
type crashing struct{ webhook.Queue }

func (crashing) Release(context.Context) error { return nil }

// Events queued while the receiver is down, by a node that then dies, are
// all sent by another node once the receiver is back; a leave on one node
// and a return on another within the delay emit nothing.
func TestRedisSendersShareTheQueue(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rcv := newReceiver(t)
	rcv.setAnswer(func(got, int) int { return http.StatusServiceUnavailable }) // down
	newQ := redisQueues(srv.URL())
	cfg := webhook.Config{RetryMin: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, OfflineDelay: 500 * time.Millisecond}

	cfgA := cfg
	cfgA.Queue = crashing{newQ(t, "a", 0)}
	a, _, crashA := runSender(t, rcv, cfgA)

	const users = 50
	for i := range users {
		u := fmt.Sprint("u", i)
		a.UserOnline(session.Binding{ConnID: u, UserID: u, Action: "chat", Node: "a"})
		a.Undelivered(fmt.Appendf(nil, `{"to":%q}`, u), u, "chat")
	}
	a.UserOffline("u0", "chat") // its user.offline is scheduled in Redis
	waitFor(t, 10*time.Second, "attempts while the receiver is down", func() bool { return len(rcv.requests()) > 0 })

	cfgB := cfg
	cfgB.Queue = newQ(t, "b", 0)
	b, regB := startSender(t, rcv, cfgB)
	crashA()
	rcv.setAnswer(nil) // back

	want := float64(2*users + 1)
	waitFor(t, 20*time.Second, "every event sent by b", func() bool {
		return counter(t, regB, "switchboard_webhook_delivered_total") >= want
	})
	acked := map[string]int{}
	for _, g := range rcv.requests() {
		acked[g.Type]++
	}
	if acked["user.online"] < users || acked["message.undelivered"] < users || acked["user.offline"] < 1 {
		t.Fatalf("received %v, want every event at least once", acked)
	}

	// Leave on b, come back on a fresh node c within the delay: nothing.
	cfgC := cfg
	cfgC.Queue = newQ(t, "c", 0)
	c, _ := startSender(t, rcv, cfgC)
	before := len(rcv.requests())
	b.UserOffline("u1", "chat")
	time.Sleep(100 * time.Millisecond) // b's hook reaches Redis; then the return, well within 500ms
	c.UserOnline(session.Binding{ConnID: "u1b", UserID: "u1", Action: "chat", Node: "c"})
	time.Sleep(time.Second) // asserting an absence: past the delay
	if after := rcv.requests(); len(after) != before {
		t.Fatalf("got %d events after a return within the delay, want none: %s", len(after)-before, after[before].Body)
	}
}

// While Redis is down, hook calls wait in the node's buffer; once Redis
// answers again they are queued and sent.
func TestRedisSenderOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rcv := newReceiver(t)
	startSender(t, rcv, webhook.Config{Queue: redisQueues(srv.URL())(t, "a", 0), Timeout: 500 * time.Millisecond})
	s, _ := startSender(t, rcv, webhook.Config{Queue: redisQueues(srv.URL())(t, "b", 0), Timeout: 500 * time.Millisecond})
	srv.Stop()
	for i := range 20 {
		u := fmt.Sprint("u", i)
		s.UserOnline(session.Binding{ConnID: u, UserID: u, Action: "chat", Node: "b"})
	}
	time.Sleep(time.Second) // the outage lasts; the calls wait in b's buffer
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("%d events sent while Redis was down", n)
	}
	srv.Restart() // empty: nothing was written while it was down
	waitFor(t, 20*time.Second, "every event after the outage", func() bool {
		seen := map[string]bool{}
		for _, g := range rcv.requests() {
			seen[g.Data["user_id"].(string)] = true
		}
		return len(seen) == 20
	})
}
