package chaos

import (
	"strconv"
	"testing"
	"time"
)

// A stall shorter than the client's 1 s read timeout: commands wait, none
// fails, and nothing is lost or doubled.
func TestRedisStallShort(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.traffic(func() {
		for range 3 {
			c.redisDo("DEBUG", "SLEEP", "0.5")
			time.Sleep(300 * time.Millisecond) // traffic between the stalls
		}
	})
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// A stall longer than the read timeout: the pipelines waiting on Redis
// time out and their messages get unavailable; Redis then runs what it had
// read, so some of them are delivered all the same, but none twice (the
// client never resends a publish).
func TestRedisStallLong(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.traffic(func() { c.redisDo("DEBUG", "SLEEP", "2") })
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// Redis paused for every client (CLIENT PAUSE ALL): as a long stall.
func TestRedisPaused(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.traffic(func() {
		c.redisDo("CLIENT", "PAUSE", "2000", "ALL")
		time.Sleep(2 * time.Second) // the pause, with traffic
	})
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// Redis drops every pub/sub connection: each node's subscription is gone
// until it resubscribes. A message to a node without its subscription must
// get unavailable, never an ack that counts it. What Redis had queued for
// a killed subscriber, after PUBLISH counted it, it throws away; the node
// replays it from the target's history once subscribed again, so every
// broadcast and direct message acked (the mailbox is off) arrives, exactly
// once and in order.
func TestPubSubKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.traffic(func() { c.killPubSub(8, 250*time.Millisecond) })
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// killPubSub has Redis drop every pub/sub connection n times, with gap of
// traffic after each.
func (c *cluster) killPubSub(n int, gap time.Duration) {
	for range n {
		c.redisDo("CLIENT", "KILL", "TYPE", "pubsub")
		time.Sleep(gap)
	}
}

// The same with the mailbox on: a direct message Redis dropped with a
// killed subscriber after PUBLISH counted it was kept, and the node replays
// it once resubscribed, so every direct message acked (with a seq) arrives,
// exactly once and in order, kills or not.
func TestPubSubKilledMailbox(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--mailbox=true")
	c.traffic(func() { c.killPubSub(8, 250*time.Millisecond) })
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// Redis is flushed: every binding and heartbeat is gone at once. Nodes
// notice (their heartbeat is missing), rewrite their bindings, and answer
// unavailable, never user_offline, meanwhile.
func TestRedisFlushed(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.traffic(func() { c.redisDo("FLUSHALL") })
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// The same with a node that only receives: it rewrites its bindings at its
// next heartbeat, up to a second after the others, and meanwhile its users
// must not be reported offline.
func TestRedisFlushedQuietNode(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.silence(c.nodes[2])
	c.traffic(func() { c.redisDo("FLUSHALL") })
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// Redis stops and comes back empty. While it is down, connections close
// and new ones are refused; none of them may leave a binding or a
// subscription behind once it is back.
func TestRedisRestartedEmpty(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	var leaving []*client
	for i, n := range c.nodes {
		for k := range 5 {
			cl := dialOnline(t, n, chatAction, "l"+string(rune('0'+i))+"-"+string(rune('0'+k)))
			leaving = append(leaving, cl)
			c.extra = append(c.extra, cl)
		}
	}
	c.expectPresence(10 * time.Second)
	c.traffic(func() {
		c.restarts = append(c.restarts, time.Now()) // what Redis had queued for subscribers dies with it
		c.redis.Stop()
		for _, cl := range leaving {
			cl.close()
		}
		// Refused (unavailable, 1013) while Redis is down; one that gets
		// through counts in presence like any other.
		late := make(chan *client, len(c.nodes))
		for i, n := range c.nodes {
			go func() {
				cl, err := tryOnline(n, chatAction, "late"+string(rune('0'+i)))
				if err != nil {
					cl = nil
				}
				late <- cl
			}()
		}
		for range c.nodes {
			if cl := <-late; cl != nil {
				cl.t = t
				t.Cleanup(cl.close)
				c.extra = append(c.extra, cl)
			}
		}
		c.redis.Restart()
	})
	c.expectPresence(2 * heartbeatTTL)
	c.finish()
}

// Connections close during a stall longer than the read timeout but
// shorter than the heartbeat's check: their unbinds fail and must be
// retried, leaving no ghost binding (presence showing the user, direct
// messages acked and lost) and owing no leave event.
func TestUnbindDuringStall(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	crowd := dialCrowd(t, c.nodes[0], chatAction, "g", crowdSize())
	c.extra = append(c.extra, crowd...)
	watcher := dialOnline(t, c.nodes[1], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.expectPresence(10 * time.Second)
	c.traffic(func() {
		stalled := make(chan struct{})
		go func() {
			defer close(stalled)
			c.redisDo("DEBUG", "SLEEP", "2.5")
		}()
		time.Sleep(100 * time.Millisecond) // let the stall begin
		for _, cl := range crowd {
			cl.close()
		}
		<-stalled
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, cl := range crowd {
		waitFor(t, 5*time.Second, "a leave of "+cl.user, func() bool { return leaves(cl.user) >= 1 })
	}
	c.finish()
}

// Redis paused for longer than the heartbeat TTL: every heartbeat expires
// meanwhile, though every node is alive. No node may reap the others' bindings
// (each rewrites its own anyway) and send leave events for users who never
// left; presence is right within twice the TTL.
func TestRedisStallBeyondTTL(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	watcher := dialOnline(t, c.nodes[0], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.traffic(func() {
		// Paused rather than stalled: what nodes send meanwhile waits and
		// runs when the pause ends, reaps included.
		ms := (heartbeatTTL + time.Second).Milliseconds()
		c.redisDo("CLIENT", "PAUSE", strconv.FormatInt(ms, 10), "ALL")
		time.Sleep(time.Duration(ms) * time.Millisecond) // traffic during the pause
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, cl := range c.clients {
		if cl.action == chatAction && leaves(cl.user) != 0 {
			t.Errorf("watcher got %d leave events of %s, who never left", leaves(cl.user), cl.user)
		}
	}
	c.finish()
}
