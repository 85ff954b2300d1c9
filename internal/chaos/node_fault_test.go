package chaos

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A node killed with SIGKILL: until its heartbeat expires and another node
// reaps it, the store still lists its connections. Messages to them must
// get an error (unavailable, then user_offline once reaped), never an ack
// that counts them; presence is right within twice the heartbeat TTL.
func TestNodeKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	victim := c.nodes[2]
	// Many users on the victim: reaping them sends a leave for each.
	crowd := dialCrowd(t, victim, chatAction, "k", crowdSize())
	c.extra = append(c.extra, crowd...)
	watcher := dialOnline(t, c.nodes[0], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.expectPresence(10 * time.Second)
	var killed time.Time
	c.traffic(func() {
		killed = time.Now()
		victim.kill()
		c.dead[victim] = true
		// Traffic to the dead node's users until it has been reaped.
		waitFor(t, 2*heartbeatTTL, "the dead node's users gone from presence", func() bool {
			users, _, err := c.nodes[0].presence(chatAction)
			return err == nil && !containsAny(users, "s2", "r2")
		})
		t.Logf("reaped %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, cl := range append(crowd, c.clients...) {
		if cl.node == victim && cl.action == chatAction {
			waitFor(t, 5*time.Second, "a leave of "+cl.user, func() bool { return leaves(cl.user) >= 1 })
		}
	}
	c.finish()
}

// A node shut down (SIGTERM) during traffic: its clients get 1001, its
// bindings go, the others see a leave for each of its users, and it exits
// within SHUTDOWN_TIMEOUT.
func TestNodeShutdown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	victim := c.nodes[2]
	crowd := dialCrowd(t, victim, chatAction, "k", crowdSize())
	c.extra = append(c.extra, crowd...)
	watcher := dialOnline(t, c.nodes[0], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.expectPresence(10 * time.Second)
	c.closing = time.Second
	c.traffic(func() {
		took := victim.terminate(10 * time.Second)
		c.dead[victim] = true
		t.Logf("node shut down in %v", took.Round(10*time.Millisecond))
		if logs := victim.logText(); !strings.Contains(logs, "shut down cleanly") {
			t.Errorf("no clean shutdown in the logs:\n%s", logs)
		}
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, cl := range append(crowd, c.clients...) {
		if cl.node == victim && cl.action == chatAction {
			waitFor(t, 5*time.Second, "a leave of "+cl.user, func() bool { return leaves(cl.user) >= 1 })
		}
	}
	c.finish()
}

func containsAny(list []string, xs ...string) bool {
	for _, s := range list {
		for _, x := range xs {
			if s == x {
				return true
			}
		}
	}
	return false
}

// crowdSize is how many users a test puts on one node to remove in bulk.
func crowdSize() int {
	if testing.Short() {
		return 50
	}
	return 300
}

// dialCrowd brings n users (prefix0, prefix1, …) online on node, a few at
// a time; with same, every connection is of one user named prefix.
func dialCrowd(t *testing.T, on *node, action, prefix string, n int, same ...bool) []*client {
	t.Helper()
	out := make([]*client, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			user := prefix + strconv.Itoa(i)
			if len(same) > 0 && same[0] {
				user = prefix
			}
			cl, err := tryOnline(on, action, user)
			if err == nil {
				cl.t = t
				out[i] = cl
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("crowd online: %v", err)
		}
	}
	for _, cl := range out {
		t.Cleanup(cl.close)
	}
	return out
}

// A node shut down while Redis is paused for longer than SHUTDOWN_TIMEOUT
// (but shorter than what is left of the heartbeats' TTL): its unbinds
// cannot run, so its connection handlers wait for Redis past the timeout.
// No handler may use the Redis client after the process closed it, and
// once Redis is back the node's bindings are gone (removed by the node
// itself, or reaped by the others), with a leave for each of its users.
func TestNodeShutdownRedisPaused(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--shutdown-timeout", "1s")
	victim := c.nodes[2]
	crowd := dialCrowd(t, victim, chatAction, "k", crowdSize()/3)
	c.extra = append(c.extra, crowd...)
	watcher := dialOnline(t, c.nodes[0], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.expectPresence(10 * time.Second)
	c.closing = time.Second
	c.traffic(func() {
		// Heartbeats are refreshed every second with a TTL of 3 s: a pause
		// under 2 s lets none of them expire.
		c.redisDo("CLIENT", "PAUSE", "1800", "ALL")
		// SHUTDOWN_TIMEOUT plus one store timeout for the handlers still
		// waiting on Redis, plus slack for a loaded machine.
		took := victim.terminate(15 * time.Second)
		c.dead[victim] = true
		t.Logf("node shut down in %v with Redis paused", took.Round(10*time.Millisecond))
		logs := victim.logText()
		for _, bad := range []string{"panic", "client is closed", "DATA RACE"} {
			if strings.Contains(logs, bad) {
				t.Errorf("%q in the logs of the node shut down:\n%s", bad, logs)
			}
		}
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, cl := range append(crowd, c.clients...) {
		if cl.node == victim && cl.action == chatAction {
			waitFor(t, 5*time.Second, "a leave of "+cl.user, func() bool { return leaves(cl.user) >= 1 })
		}
	}
	c.finish()
}
