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
// Cluster accepts), with no replicas.
const clusterSize = 3

// clusterTimeout bounds joining the nodes and waiting for cluster_state:ok.
const clusterTimeout = 30 * time.Second

// Cluster is a private three-master Redis Cluster owned by one test. Its
// methods are safe for concurrent use.
type Cluster struct {
	t       testing.TB
	servers []*Server

	mu     sync.Mutex
	client *redis.ClusterClient
}

// StartCluster runs three redis-server processes in cluster mode on free
// loopback ports (client and cluster-bus ports both picked free), joins them
// with `redis-cli --cluster create`, and returns once every node reports
// cluster_state:ok. Everything is killed when the test ends. A missing
// redis-server or redis-cli fails the test.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal(notFound)
	}
	c := &Cluster{t: t}
	for range clusterSize {
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

	ctx, cancel := context.WithTimeout(t.Context(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatal(err)
	}
	return c
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

// Servers returns the cluster's masters.
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
