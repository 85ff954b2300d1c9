package chaos

import (
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
	c.finish()
}

// A node shut down (SIGTERM) during traffic: its clients get 1001, its
// bindings go, the others see a leave for each of its users, and it exits
// within SHUTDOWN_TIMEOUT.
func TestNodeShutdown(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	victim := c.nodes[2]
	watcher := dialOnline(t, c.nodes[0], chatAction, "watcher")
	c.extra = append(c.extra, watcher)
	leaves := watchLeaves(watcher)
	c.traffic(func() {
		took := victim.terminate(10 * time.Second)
		c.dead[victim] = true
		t.Logf("node shut down in %v", took.Round(10*time.Millisecond))
		if logs := victim.logText(); !strings.Contains(logs, "shut down cleanly") {
			t.Errorf("no clean shutdown in the logs:\n%s", logs)
		}
	})
	c.expectPresence(2 * heartbeatTTL)
	for _, u := range []string{"s2", "r2"} {
		waitFor(t, 2*heartbeatTTL, "a leave of "+u, func() bool { return leaves(u) == 1 })
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
