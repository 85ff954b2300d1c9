package chaos

import (
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
