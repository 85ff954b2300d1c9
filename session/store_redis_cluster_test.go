package session

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

// TestRedisClusterStoreRestoreHalfWritten: a Restore interrupted after it
// wrote a connection hash (a cluster that is still coming up answers
// CLUSTERDOWN for some slots) leaves the hash without its user and action
// entries. Restoring again completes the binding.
func TestRedisClusterStoreRestoreHalfWritten(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	s := newRedisStore(t, cl.URL(), RedisOptions{})
	ctx := t.Context()
	b := Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1", ConnectedAt: time.UnixMilli(1_700_000_000_000)}
	heartbeat(t, s, "n1", time.Minute)
	// What the interrupted Restore left: the node index and the conn hash.
	if err := s.c.SAdd(ctx, s.nodeConnsKey("n1"), "c1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.HSet(ctx, s.connKey("c1"), connFields(b)...).Err(); err != nil {
		t.Fatal(err)
	}

	if err := s.Restore(ctx, []Binding{b}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.ActionConns(ctx, "chat"); err != nil || m["c1"] != "alice" {
		t.Fatalf("ActionConns(chat) = %v, %v; want c1 → alice", m, err)
	}
	if n, err := s.CountUser(ctx, "chat", "alice"); err != nil || n != 1 {
		t.Fatalf("CountUser(chat, alice) = %d, %v; want 1", n, err)
	}
	// Restoring again changes nothing (no double count in the route hashes).
	if err := s.Restore(ctx, []Binding{b}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountUser(ctx, "chat", "alice"); err != nil || n != 1 {
		t.Fatalf("CountUser after a second Restore = %d, %v; want 1", n, err)
	}
	if rs, err := s.RemoveNode(ctx, "n1"); err != nil || len(rs) != 1 || !rs[0].Last {
		t.Fatalf("RemoveNode = %v, %v; want c1, last", rs, err)
	}
}
