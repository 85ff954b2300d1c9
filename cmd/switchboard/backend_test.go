package main

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
)

// backend is a Redis deployment that end-to-end tests run on: a single
// Redis, or a three-master Redis Cluster with or without a replica per
// master.
type backend struct {
	url     string
	rdb     redis.UniversalClient // for assertions
	cluster *redistest.Cluster    // nil on a single Redis
	stop    func()                // every server, as in an outage
	restart func()                // back, empty (a cluster is created again)
}

// key returns the name of a store key with the default prefix: on a
// cluster the id is a hash tag (docs/cluster.md).
func (b *backend) key(kind, id string) string {
	if b.cluster != nil {
		return "sb:" + kind + ":{" + id + "}"
	}
	return "sb:" + kind + ":" + id
}

var backends = []struct {
	name  string
	start func(t *testing.T) *backend
}{
	{"redis", func(t *testing.T) *backend {
		rs := redistest.Start(t)
		return &backend{url: rs.URL(), rdb: rs.Client(), stop: rs.Stop, restart: rs.Restart}
	}},
	{"cluster", func(t *testing.T) *backend { return clusterBackend(t) }},
	{"cluster-replicas", func(t *testing.T) *backend { return clusterBackend(t, redistest.WithReplicas(1)) }},
}

func clusterBackend(t *testing.T, opts ...redistest.ClusterOption) *backend {
	cl := redistest.StartCluster(t, opts...)
	return &backend{url: cl.URL(), rdb: cl.Client(), cluster: cl, stop: cl.Stop, restart: cl.Restart}
}

// forEachBackend runs test on every backend, one subtest each.
func forEachBackend(t *testing.T, test func(t *testing.T, be *backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.start(t)) })
	}
}
