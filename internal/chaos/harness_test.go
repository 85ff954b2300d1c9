package chaos

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

// Actions of the standard traffic: direct messages in chat, broadcasts in room.
const (
	chatAction = "chat"
	roomAction = "room"
	prefix     = "sb:"
)

// sendEvery is the pause between two messages of one sender (50/s each,
// half the default rate limit).
const sendEvery = 20 * time.Millisecond

// goroutineSlack is how many goroutines a node may hold beyond its count
// before any client connected, once every client has gone.
const goroutineSlack = 5

// cluster is three nodes on one private Redis, with clients on each:
// senders s0..s2 and receivers r0..r2 in chat (s_i sends direct messages
// to the two receivers on the other nodes), and b0..b2 in room, each
// broadcasting to the others.
type cluster struct {
	t        *testing.T
	redis    *redistest.Server
	nodes    []*node
	baseline []int // goroutines per node before any client
	dead     map[*node]bool
	clients  []*client // every client of the standard traffic
	extra    []*client // clients a test added; they count in presence
	streams  []*stream

	// restarts are the moments Redis stopped, to restart empty: what it
	// had queued for subscribers, after PUBLISH counted it, died with it,
	// and so did the histories nodes replay from, so a message acked just
	// then may be lost. A CLIENT KILL excuses nothing: the history is
	// still there, and a node replays what its killed subscription lost.
	restarts []time.Time

	// mailbox: the nodes keep direct messages. A direct message acked then
	// carries a seq and must reach its receiver whatever happened to the
	// subscriptions: the node replays what a broken one lost from the
	// mailbox, so CLIENT KILL excuses no loss of one.
	mailbox bool

	// closing is how long after a receiver's connection closed a message
	// may still be counted for it: a node shutting down closes its
	// connections first and removes their bindings once each close
	// handshake is done, and the count of an ack comes from the bindings.
	closing time.Duration
}

// restartWindow is how close to a restart a lost message must have been
// sent to be put down to the restart.
const restartWindow = 500 * time.Millisecond

// stream is the messages of one sender to one target, numbered from 1.
type stream struct {
	name      string
	from      *client
	to        string // user; "" for a broadcast
	receivers []*client

	mu     sync.Mutex
	sentAt []time.Time // sentAt[k-1] is when message k was written
}

func newCluster(t *testing.T, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, redis: redistest.Start(t), dead: make(map[*node]bool), mailbox: mailboxFlag == ""}
	for _, a := range extra {
		switch a {
		case "--mailbox=true":
			c.mailbox = true
		case "--mailbox=false":
			c.mailbox = false
		}
	}
	for i := range 3 {
		c.nodes = append(c.nodes, startNode(t, "n"+strconv.Itoa(i), c.redis.URL(), extra...))
	}
	for _, n := range c.nodes {
		g, err := n.goroutines()
		if err != nil {
			t.Fatal(err)
		}
		c.baseline = append(c.baseline, g)
	}
	var senders, receivers, bcast []*client
	for i, n := range c.nodes {
		senders = append(senders, dialOnline(t, n, chatAction, "s"+strconv.Itoa(i)))
		receivers = append(receivers, dialOnline(t, n, chatAction, "r"+strconv.Itoa(i)))
		bcast = append(bcast, dialOnline(t, n, roomAction, "b"+strconv.Itoa(i)))
	}
	c.clients = slices.Concat(senders, receivers, bcast)
	for i, s := range senders {
		for _, j := range []int{(i + 1) % 3, (i + 2) % 3} {
			r := receivers[j]
			c.streams = append(c.streams, &stream{name: s.user + ">" + r.user, from: s, to: r.user, receivers: []*client{r}})
		}
	}
	for i, b := range bcast {
		var rs []*client
		for j, o := range bcast {
			if j != i {
				rs = append(rs, o)
			}
		}
		c.streams = append(c.streams, &stream{name: b.user + ">*", from: b, receivers: rs})
	}
	c.expectPresence(10 * time.Second)
	return c
}

// messages is how long the traffic runs around a fault.
func messages() (warmup, tail time.Duration) {
	if testing.Short() {
		return 200 * time.Millisecond, 500 * time.Millisecond
	}
	return time.Second, 2 * time.Second
}

// traffic runs the standard traffic, runs fault in the middle of it, keeps
// sending for a while after fault returned, then checks every message: see
// verify.
func (c *cluster) traffic(fault func()) {
	c.t.Helper()
	warmup, tail := messages()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	bySender := make(map[*client][]*stream)
	for _, s := range c.streams {
		bySender[s.from] = append(bySender[s.from], s)
	}
	for from, ss := range bySender {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(sendEvery)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if !from.closedAt().IsZero() {
					return
				}
				ss[i%len(ss)].send()
			}
		}()
	}
	time.Sleep(warmup) // traffic before the fault, not synchronisation
	fault()
	time.Sleep(tail) // traffic after it
	close(stop)
	wg.Wait()
	c.verify()
}

// send writes the stream's next message.
func (s *stream) send() {
	s.mu.Lock()
	s.sentAt = append(s.sentAt, time.Now())
	k := len(s.sentAt)
	s.mu.Unlock()
	m := map[string]any{"id": s.name + "#" + strconv.Itoa(k), "stream": s.name, "n": k}
	if s.to != "" {
		m["to"] = s.to
	}
	s.from.send(m)
}

func (s *stream) sent() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sentAt)
}

// diedAt returns when the first of the stream's receivers lost its
// connection, or zero.
func (s *stream) diedAt() time.Time {
	var first time.Time
	for _, r := range s.receivers {
		if at := r.closedAt(); !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// fence sends messages on s until one is acked as handed to every
// receiver, then waits until every receiver has it: since one sender's
// messages arrive in order, everything sent before has arrived too.
func (c *cluster) fence(s *stream) {
	c.t.Helper()
	deadline := time.Now().Add(2*heartbeatTTL + 20*time.Second)
	for {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no message acked to all %d receivers after the fault", s.name, len(s.receivers))
		}
		s.send()
		k := len(s.sent())
		id := s.name + "#" + strconv.Itoa(k)
		var a answer
		if err := poll(15*time.Second, func() bool {
			var ok bool
			a, ok = s.from.answerTo(id)
			return ok
		}); err != nil {
			c.t.Fatalf("%s: no answer to %s", s.name, id)
		}
		if a.code == "" && a.delivered == len(s.receivers) {
			for _, r := range s.receivers {
				waitFor(c.t, 15*time.Second, r.user+" to receive "+id, func() bool {
					return slices.Contains(r.received(s.name), k)
				})
			}
			return
		}
		time.Sleep(200 * time.Millisecond) // retry pace
	}
}

// verify checks every stream: each message got exactly one answer; one
// acked with a count was received by exactly that many receivers; no
// receiver got a message twice or out of order; an error is unavailable
// (or, to a receiver that is gone, user_offline); nothing sent after a
// receiver's connection was gone is acked as delivered to it.
func (c *cluster) verify() {
	c.t.Helper()
	for _, s := range c.streams {
		if s.diedAt().IsZero() && s.from.closedAt().IsZero() {
			c.fence(s)
		}
	}
	var acked, failed, total int
	codes := map[string]int{}
	for _, s := range c.streams {
		sent := s.sent()
		if s.from.closedAt().IsZero() {
			for k := 1; k <= len(sent); k++ {
				id := s.name + "#" + strconv.Itoa(k)
				waitFor(c.t, 20*time.Second, "the answer to "+id, func() bool {
					_, ok := s.from.answerTo(id)
					return ok
				})
			}
		}
		got := make(map[*client][]int)
		for _, r := range s.receivers {
			got[r] = r.received(s.name)
			for i := 1; i < len(got[r]); i++ {
				if got[r][i] <= got[r][i-1] {
					c.t.Errorf("%s: %s received message %d after %d (duplicate or out of order)", s.name, r.user, got[r][i], got[r][i-1])
				}
			}
		}
		died := s.diedAt()
		for k := 1; k <= len(sent); k++ {
			total++
			id := s.name + "#" + strconv.Itoa(k)
			a, ok := s.from.answerTo(id)
			if !ok {
				if s.from.closedAt().IsZero() {
					c.t.Errorf("%s: no answer", id)
				}
				continue
			}
			if a.code != "" {
				failed++
				codes[a.code]++
				switch {
				case a.code == "unavailable":
				case a.code == "user_offline" && !died.IsZero():
				default:
					c.t.Errorf("%s: error %s (receivers online: %v)", id, a.code, died.IsZero())
				}
				continue
			}
			acked++
			if !died.IsZero() && !sent[k-1].After(died) {
				continue // in flight when a receiver died: it may have been lost with the node
			}
			n := 0
			for _, r := range s.receivers {
				if slices.Contains(got[r], k) {
					n++
				}
			}
			if n != a.delivered && !died.IsZero() {
				if sent[k-1].Sub(died) < c.closing && n < a.delivered {
					c.t.Logf("%s: sent %v after a receiver's connection closed, acked delivered %d, received by %d", id, sent[k-1].Sub(died), a.delivered, n)
					continue
				}
				c.t.Errorf("%s: sent %v after a receiver's connection was gone, acked delivered %d, received by %d", id, sent[k-1].Sub(died), a.delivered, n)
				continue
			}
			if s.to != "" && died.IsZero() && a.delivered == 0 {
				// Kept in the mailbox perhaps, but not handed to a
				// recipient who was online all along: a false "offline".
				c.t.Errorf("%s: acked delivered 0 to a user online on a live node", id)
				continue
			}
			if n != a.delivered {
				if at, ok := c.nearRestart(sent[k-1]); ok && n < a.delivered {
					c.t.Logf("%s: acked delivered %d, received by %d: sent %v from a Redis restart", id, a.delivered, n, sent[k-1].Sub(at))
					continue
				}
				c.t.Errorf("%s: acked delivered %d, received by %d", id, a.delivered, n)
			}
		}
		for _, cl := range []*client{s.from} {
			cl.mu.Lock()
			if len(cl.dupes) > 0 {
				c.t.Errorf("%s: answered twice: %v", cl.user, cl.dupes)
				cl.dupes = nil
			}
			cl.mu.Unlock()
		}
	}
	c.t.Logf("messages: %d sent, %d acked, %d refused %v", total, acked, failed, codes)
}

// nearRestart returns the restart closest to at, if one is within
// restartWindow.
func (c *cluster) nearRestart(at time.Time) (time.Time, bool) {
	for _, k := range c.restarts {
		if d := at.Sub(k); d > -restartWindow && d < restartWindow {
			return k, true
		}
	}
	return time.Time{}, false
}

// silence stops the senders on n: its node only receives, so nothing it
// sends makes it notice a fault sooner than its heartbeat does.
func (c *cluster) silence(n *node) {
	c.streams = slices.DeleteFunc(c.streams, func(s *stream) bool { return s.from.node == n })
}

// alive returns the nodes not killed.
func (c *cluster) alive() []*node {
	var out []*node
	for _, n := range c.nodes {
		if !c.dead[n] {
			out = append(out, n)
		}
	}
	return out
}

// expected returns the users and connection counts that presence must show
// per action: every open client on a live node.
func (c *cluster) expected() map[string]map[string]int {
	want := map[string]map[string]int{chatAction: {}, roomAction: {}}
	for _, cl := range slices.Concat(c.clients, c.extra) {
		if c.dead[cl.node] || !cl.closedAt().IsZero() {
			continue
		}
		if want[cl.action] == nil {
			want[cl.action] = map[string]int{}
		}
		want[cl.action][cl.user]++
	}
	return want
}

// expectPresence waits up to within for every live node to report the
// expected presence of every action.
func (c *cluster) expectPresence(within time.Duration) {
	c.t.Helper()
	want := c.expected()
	var last string
	err := poll(within, func() bool {
		for _, n := range c.alive() {
			for action, users := range want {
				got, conns, err := n.presence(action)
				if err != nil {
					last = err.Error()
					return false
				}
				wantUsers := make([]string, 0, len(users))
				wantConns := 0
				for u, k := range users {
					wantUsers = append(wantUsers, u)
					wantConns += k
				}
				slices.Sort(wantUsers)
				if !slices.Equal(got, wantUsers) || conns != wantConns {
					last = fmt.Sprintf("node %s, %s: users %v (%d connections), want %v (%d)", n.id, action, got, conns, wantUsers, wantConns)
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("presence not right within %v: %s", within, last)
	}
}

// finish closes every client and checks that nothing is left: no binding
// in Redis, no subscription but each live node's own channel, no pending
// unbind, no connection and no goroutine beyond the start's.
func (c *cluster) finish() {
	c.t.Helper()
	for _, cl := range slices.Concat(c.clients, c.extra) {
		cl.close()
	}
	ctx := context.Background()
	rdb := c.redis.Client()
	var last string
	err := poll(2*heartbeatTTL+10*time.Second, func() bool {
		var left []string
		for _, kind := range []string{"conn", "action", "user", "uroute", "aroute", "nodeconns"} {
			keys, err := rdb.Keys(ctx, prefix+kind+":*").Result()
			if err != nil {
				last = err.Error()
				return false
			}
			left = append(left, keys...)
		}
		if len(left) > 0 {
			last = fmt.Sprintf("bindings left: %v", left)
			return false
		}
		for _, n := range c.alive() {
			if v, err := n.metric("switchboard_connections"); err != nil || v != 0 {
				last = fmt.Sprintf("node %s: switchboard_connections = %v (%v)", n.id, v, err)
				return false
			}
		}
		chans, err := rdb.PubSubChannels(ctx, prefix+"ch:*").Result()
		if err != nil {
			last = err.Error()
			return false
		}
		var want []string
		for _, n := range c.alive() {
			want = append(want, prefix+"ch:n:"+n.id)
		}
		slices.Sort(chans)
		slices.Sort(want)
		if !slices.Equal(chans, want) {
			clients, _ := rdb.ClientList(ctx).Result()
			last = fmt.Sprintf("subscribed channels %v, want %v; Redis clients:\n%s", chans, want, clients)
			return false
		}
		subs, err := rdb.PubSubNumSub(ctx, want...).Result()
		if err != nil {
			last = err.Error()
			return false
		}
		for ch, k := range subs {
			if k != 1 {
				last = fmt.Sprintf("%s has %d subscribers, want 1", ch, k)
				return false
			}
		}
		for i, n := range c.nodes {
			if c.dead[n] {
				continue
			}
			for _, m := range []string{"switchboard_pending_unbinds", "switchboard_connections"} {
				v, err := n.metric(m)
				if err != nil || v != 0 {
					last = fmt.Sprintf("node %s: %s = %v (%v)", n.id, m, v, err)
					return false
				}
			}
			g, err := n.goroutines()
			if err != nil || g > c.baseline[i]+goroutineSlack {
				last = fmt.Sprintf("node %s: %d goroutines, %d at start (%v)\n%s", n.id, g, c.baseline[i], err, n.goroutineDump())
				return false
			}
		}
		return true
	})
	if err != nil {
		c.t.Fatalf("leftovers after every client closed: %s", last)
	}
}

// redisDo runs a command on the test's Redis with a deadline long enough
// for DEBUG SLEEP and CLIENT PAUSE.
func (c *cluster) redisDo(args ...any) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.redis.Client().Do(ctx, args...).Err(); err != nil {
		c.t.Fatalf("redis %v: %v", args, err)
	}
}

func joinArgs(args []any) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = fmt.Sprint(a)
	}
	return strings.Join(s, " ")
}
