package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSize is the number of masters StartCluster runs (the fewest Redis
// Cluster accepts).
const clusterSize = 3

// clusterTimeout bounds joining the nodes and waiting for cluster_state:ok.
const clusterTimeout = 30 * time.Second

// Cluster is a private three-master Redis Cluster owned by one test. Its
// methods are safe for concurrent use.
type Cluster struct {
	t        testing.TB
	servers  []*Server // masters first, then replicas
	replicas int

	mu     sync.Mutex
	client *redis.ClusterClient
}

// ClusterOption configures StartCluster.
type ClusterOption func(*Cluster)

// WithReplicas gives every master n replicas (default 0).
func WithReplicas(n int) ClusterOption { return func(c *Cluster) { c.replicas = n } }

// StartCluster runs three redis-server masters in cluster mode (and their
// replicas, see WithReplicas) on free loopback ports (client and
// cluster-bus ports both picked free), joins them with `redis-cli --cluster
// create`, and returns once every node reports cluster_state:ok. Everything
// is killed when the test ends. A missing redis-server or redis-cli fails
// the test.
func StartCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal(notFound)
	}
	c := &Cluster{t: t}
	for _, o := range opts {
		o(c)
	}
	for range clusterSize * (1 + c.replicas) {
		bus, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := newServer(t, func(dir string) []string {
			return []string{
				"--cluster-enabled", "yes",
				// Relative to each run's --dir, so a Restart starts afresh.
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", "5000",
			}
		})
		if err := s.startFresh(); err != nil {
			t.Fatal(err)
		}
		c.servers = append(c.servers, s)
	}
	if err := c.create(); err != nil {
		t.Fatal(err)
	}
	return c
}

// create joins the servers into a cluster and waits until it is ok.
// redis-cli makes the first clusterSize servers the masters.
func (c *Cluster) create() error {
	ctx, cancel := context.WithTimeout(c.t.Context(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(c.replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	return c.waitOK(ctx)
}

// Restart restarts every node empty on its port and creates the cluster
// again, as a whole cluster that restarted without persistence. Clients
// keep their seeds and reconnect.
func (c *Cluster) Restart() {
	c.t.Helper()
	for _, s := range c.servers {
		s.Restart()
	}
	if err := c.create(); err != nil {
		c.t.Fatal(err)
	}
}

// waitOK polls CLUSTER INFO on every node until each says cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for _, s := range c.servers {
		for {
			info, err := s.Client().ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("redistest: cluster node %s not ok: %v\n%s", s.Addr(), err, info)
			case <-tick.C:
			}
		}
	}
	return nil
}

// Servers returns the cluster's nodes as created: the three masters first,
// then the replicas. After a failover a replica may be a master: see
// Masters.
func (c *Cluster) Servers() []*Server { return c.servers }

// Addrs returns the masters' "127.0.0.1:PORT" addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// URL returns a REDIS_URL naming every master as a seed:
// "redis://127.0.0.1:P1,redis://127.0.0.1:P2,redis://127.0.0.1:P3".
func (c *Cluster) URL() string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Client returns a go-redis cluster client for assertions, created on first
// use and closed when the test ends.
func (c *Cluster) Client() *redis.ClusterClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		cl := c.client
		c.t.Cleanup(func() { _ = cl.Close() })
	}
	return c.client
}

// Stop kills every node, as in an outage of the whole cluster.
func (c *Cluster) Stop() {
	for _, s := range c.servers {
		s.Stop()
	}
}

// Masters returns the servers that currently own slots, in the order of
// Servers.
func (c *Cluster) Masters() []*Server {
	c.t.Helper()
	var ms []*Server
	for _, s := range c.servers {
		role, err := s.Do("ROLE")
		if err != nil {
			c.t.Fatalf("redistest: ROLE on %s: %v", s.Addr(), err)
		}
		if r, ok := role.([]any); ok && len(r) > 0 && r[0] == "master" {
			ms = append(ms, s)
		}
	}
	return ms
}

// Slot returns the hash slot of key, as the cluster computes it.
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	n, err := c.servers[0].Do("CLUSTER", "KEYSLOT", key)
	if err != nil {
		c.t.Fatal(err)
	}
	return int(n.(int64))
}

// Owner returns the master that owns slot, in the view of the first node.
func (c *Cluster) Owner(slot int) *Server {
	c.t.Helper()
	addr, err := slotOwner(c.servers[0], slot)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, s := range c.servers {
		if s.Addr() == addr {
			return s
		}
	}
	c.t.Fatalf("redistest: slot %d owned by unknown %s", slot, addr)
	return nil
}

// MoveSlot moves slot and its keys to master to while clients keep using
// the cluster, as `redis-cli --cluster reshard` does for each slot:
// CLUSTER SETSLOT IMPORTING on the target, MIGRATING on the source,
// MIGRATE of the keys in batches (clients meanwhile get ASK redirections
// for keys already moved), then SETSLOT NODE on every master. Redis then
// unsubscribes the slot's sharded pub/sub subscribers on the old owner.
func (c *Cluster) MoveSlot(slot int, to *Server) error {
	from := c.Owner(slot)
	if from == to {
		return nil
	}
	id := func(s *Server) (string, error) {
		v, err := s.Do("CLUSTER", "MYID")
		if err != nil {
			return "", err
		}
		return v.(string), nil
	}
	fromID, err := id(from)
	if err != nil {
		return err
	}
	toID, err := id(to)
	if err != nil {
		return err
	}
	if _, err := to.Do("CLUSTER", "SETSLOT", slot, "IMPORTING", fromID); err != nil {
		return fmt.Errorf("redistest: SETSLOT IMPORTING: %w", err)
	}
	if _, err := from.Do("CLUSTER", "SETSLOT", slot, "MIGRATING", toID); err != nil {
		return fmt.Errorf("redistest: SETSLOT MIGRATING: %w", err)
	}
	host, port, _ := strings.Cut(to.Addr(), ":")
	for {
		v, err := from.Do("CLUSTER", "GETKEYSINSLOT", slot, 100)
		if err != nil {
			return fmt.Errorf("redistest: GETKEYSINSLOT: %w", err)
		}
		keys := v.([]any)
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		args = append(args, keys...)
		if _, err := from.Do(args...); err != nil {
			return fmt.Errorf("redistest: MIGRATE: %w", err)
		}
	}
	// The new owner first, then the old one, then every other node (as
	// redis-cli does). The new owner bumps its config epoch without
	// consensus; two moves in a row can give two masters the same epoch,
	// and then the other nodes keep the old owner. So wait until every
	// node names the new owner, telling the stragglers again.
	ctx, cancel := context.WithTimeout(c.t.Context(), clusterTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, s := range append([]*Server{to, from}, c.servers...) {
		if _, err := s.Do("CLUSTER", "SETSLOT", slot, "NODE", toID); err != nil && s != from && s != to {
			continue // a replica may refuse; it learns by gossip
		} else if err != nil {
			return fmt.Errorf("redistest: SETSLOT NODE on %s: %w", s.Addr(), err)
		}
	}
	for {
		agreed := true
		for _, s := range c.servers {
			if owner, err := slotOwner(s, slot); err != nil || owner != to.Addr() {
				agreed = false
				_, _ = s.Do("CLUSTER", "SETSLOT", slot, "NODE", toID) // best effort
			}
		}
		if agreed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redistest: nodes do not agree that %s owns slot %d", to.Addr(), slot)
		case <-tick.C:
		}
	}
}

// slotOwner returns the address of slot's owner in s's view.
func slotOwner(s *Server, slot int) (string, error) {
	v, err := s.Do("CLUSTER", "SLOTS")
	if err != nil {
		return "", err
	}
	for _, r := range v.([]any) {
		r := r.([]any)
		if int(r[0].(int64)) <= slot && slot <= int(r[1].(int64)) {
			m := r[2].([]any)
			return fmt.Sprintf("%s:%d", m[0], m[1].(int64)), nil
		}
	}
	return "", fmt.Errorf("redistest: %s: slot %d has no owner", s.Addr(), slot)
}
