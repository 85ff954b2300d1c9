package session

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/internal/redistest"
)

func TestRedisStore(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testStore(t, func(t *testing.T) Store { return newRedisStore(t, srv.URL(), RedisOptions{}) },
		func(t *testing.T, n int) Store {
			return newRedisStore(t, srv.URL(), RedisOptions{MaxUserConnections: n})
		})
}

func TestRedisClusterStore(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	testStore(t, func(t *testing.T) Store { return newRedisStore(t, cl.URL(), RedisOptions{}) },
		func(t *testing.T, n int) Store {
			return newRedisStore(t, cl.URL(), RedisOptions{MaxUserConnections: n})
		})
}

// newRedisStore returns a RedisStore on a client for url, with a key prefix
// of its own (from the test's name) unless opts sets one.
func newRedisStore(t *testing.T, url string, opts RedisOptions) *RedisStore {
	t.Helper()
	c, err := NewRedisClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if opts.Prefix == "" {
		opts.Prefix = "test:" + t.Name() + ":"
	}
	s := NewRedisStore(c, opts)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestNewRedisClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url      string
		cluster  bool
		addrs    []string
		db       int
		password string
		tls      bool
		dial     time.Duration
	}{
		{url: "redis://localhost:6380", addrs: []string{"localhost:6380"}, dial: 2 * time.Second},
		{url: "redis://h", addrs: []string{"h:6379"}, dial: 2 * time.Second},
		{url: "redis://:s3cret@h:6380/2", addrs: []string{"h:6380"}, db: 2, password: "s3cret", dial: 2 * time.Second},
		{url: "rediss://u:pw@h:6380?dial_timeout=5s", addrs: []string{"h:6380"}, password: "pw", tls: true, dial: 5 * time.Second},
		{url: "redis://h1:7000,redis://h2:7001, h3:7002", cluster: true, addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, dial: 2 * time.Second},
		{url: "rediss://:pw@h1:7000,rediss://h2:7001", cluster: true, addrs: []string{"h1:7000", "h2:7001"}, password: "pw", tls: true, dial: 2 * time.Second},
		{url: "redis://h1:7000?addr=h2:7001&addr=h3:7002", cluster: true, addrs: []string{"h1:7000", "h2:7001", "h3:7002"}, dial: 2 * time.Second},
		{url: "redis://h1:7000/0?cluster=true&dial_timeout=3s", cluster: true, addrs: []string{"h1:7000"}, dial: 3 * time.Second},
		{url: "redis://h1:7000?cluster=false", addrs: []string{"h1:7000"}, dial: 2 * time.Second},
	}
	for _, tc := range tests {
		// 192.0.2.0/24 is TEST-NET: no I/O happens, so nothing hangs.
		c, err := NewRedisClient(tc.url)
		if err != nil {
			t.Errorf("NewRedisClient(%q): %v", tc.url, err)
			continue
		}
		if IsCluster(c) != tc.cluster {
			t.Errorf("NewRedisClient(%q): IsCluster = %v, want %v", tc.url, IsCluster(c), tc.cluster)
		}
		var (
			addrs                   []string
			db                      int
			password                string
			tls, ctxTimeout         bool
			dial, read, write, pool time.Duration
		)
		switch c := c.(type) {
		case *redis.Client:
			o := c.Options()
			addrs, db, password, tls = []string{o.Addr}, o.DB, o.Password, o.TLSConfig != nil
			dial, read, write, pool, ctxTimeout = o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.ContextTimeoutEnabled
		case *redis.ClusterClient:
			o := c.Options()
			addrs, password, tls = o.Addrs, o.Password, o.TLSConfig != nil
			dial, read, write, pool, ctxTimeout = o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.ContextTimeoutEnabled
		}
		if !slices.Equal(addrs, tc.addrs) || db != tc.db || password != tc.password || tls != tc.tls {
			t.Errorf("NewRedisClient(%q): addrs %v db %d password %q tls %v; want %v %d %q %v",
				tc.url, addrs, db, password, tls, tc.addrs, tc.db, tc.password, tc.tls)
		}
		if dial != tc.dial || read != time.Second || write != time.Second || pool != 2*time.Second || !ctxTimeout {
			t.Errorf("NewRedisClient(%q): timeouts dial %v read %v write %v pool %v context %v; want %v 1s 1s 2s true",
				tc.url, dial, read, write, pool, ctxTimeout, tc.dial)
		}
		_ = c.Close()
	}

	for _, url := range []string{
		"http://h:6379",
		"redis://h1:7000,http://h2:7001",
		"redis://h1:7000,rediss://h2:7001",
		"redis://h1:7000,redis://h2:7001/3",
		"redis://h1:7000/3,redis://h2:7001",
		"redis://:a@h1:7000,redis://:b@h2:7001",
		"redis://h1:7000,nonsense",
		"redis://h1:7000?cluster=maybe",
		"redis://h1:7000?cluster=false&addr=h2:7001",
		"redis://h:6379?bogus=1",
	} {
		if c, err := NewRedisClient(url); err == nil {
			_ = c.Close()
			t.Errorf("NewRedisClient(%q) succeeded, want an error", url)
		}
	}
	if _, err := NewRedisClient("redis://:hunter2@h:6379/%zz"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("NewRedisClient(bad URL with password) error = %v, want one that does not show the password", err)
	}
}

// TestRedisStoreDataModel checks the keys against the spec's data model, as
// another tool (redis-cli) reads them.
func TestRedisStoreDataModel(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cl := redistest.StartCluster(t)
	for _, tc := range []struct {
		name string
		url  string
		rdb  redis.UniversalClient
		tag  func(string) string // how ids appear in key names
	}{
		{"single", srv.URL(), srv.Client(), func(s string) string { return s }},
		{"cluster", cl.URL(), cl.Client(), func(s string) string { return "{" + s + "}" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newRedisStore(t, tc.url, RedisOptions{Prefix: "sb:"})
			ctx, rdb := t.Context(), tc.rdb
			at := time.UnixMilli(1_700_000_000_123)
			heartbeat(t, s, "node-1", 15*time.Second)
			bind(t, s, Binding{ConnID: "c1", UserID: "alice@example.com", Action: "chat", Node: "node-1", ConnectedAt: at})
			bind(t, s, Binding{ConnID: "c2", UserID: "alice@example.com", Action: "lobby", Node: "node-1", ConnectedAt: at})

			tag := tc.tag
			hashes := map[string]map[string]string{
				"sb:conn:" + tag("c1"):                {"user_id": "alice@example.com", "action": "chat", "node": "node-1", "connected_at": "1700000000123"},
				"sb:conn:" + tag("c2"):                {"user_id": "alice@example.com", "action": "lobby", "node": "node-1", "connected_at": "1700000000123"},
				"sb:action:" + tag("chat"):            {"c1": "alice@example.com"},
				"sb:action:" + tag("lobby"):           {"c2": "alice@example.com"},
				"sb:user:" + tag("alice@example.com"): {"c1": "chat", "c2": "lobby"},
				// Routing counts: connections per node.
				"sb:aroute:" + tag("chat"):                   {"node-1": "1"},
				"sb:uroute:chat|" + tag("alice@example.com"): {"node-1": "1"},
			}
			for key, want := range hashes {
				got, err := rdb.HGetAll(ctx, key).Result()
				if err != nil || !maps.Equal(got, want) {
					t.Errorf("HGETALL %s = %v, %v; want %v", key, got, err, want)
				}
			}
			if typ, _ := rdb.Type(ctx, "sb:node:node-1").Result(); typ != "string" {
				t.Errorf("TYPE sb:node:node-1 = %q, want string", typ)
			}
			if ttl, _ := rdb.PTTL(ctx, "sb:node:node-1").Result(); ttl <= 0 || ttl > 15*time.Second {
				t.Errorf("PTTL sb:node:node-1 = %v, want within (0, 15s]", ttl)
			}
			if ids, _ := rdb.SMembers(ctx, "sb:nodeconns:node-1").Result(); !equalSet(ids, "c1", "c2") {
				t.Errorf("SMEMBERS sb:nodeconns:node-1 = %v, want c1 c2", ids)
			}
			if nodes, _ := rdb.SMembers(ctx, "sb:nodes").Result(); !equalSet(nodes, "node-1") {
				t.Errorf("SMEMBERS sb:nodes = %v, want node-1", nodes)
			}

			for _, id := range []string{"c1", "c2"} {
				if _, err := s.Unbind(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			// Only the heartbeat, and the node in sb:nodes, remain.
			if got := keys(t, rdb, "sb:*"); !equalSet(got, "sb:node:node-1", "sb:nodes") {
				t.Errorf("keys after Unbind = %v, want sb:node:node-1 sb:nodes", got)
			}
			if _, err := s.RemoveNode(ctx, "node-1"); err != nil {
				t.Fatal(err)
			}
			if got := keys(t, rdb, "sb:*"); len(got) != 0 {
				t.Errorf("keys after RemoveNode = %v, want none", got)
			}
		})
	}
}

// keys lists the keys matching pattern, on every master of a cluster.
func keys(t *testing.T, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx := t.Context()
	var mu sync.Mutex
	var all []string
	scan := func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		defer mu.Unlock()
		all = append(all, ks...)
		return err
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	return all
}

func equalSet(got []string, want ...string) bool {
	slices.Sort(got)
	slices.Sort(want)
	return slices.Equal(got, want)
}

// storeCalls calls every Store method once, in a typical order.
var storeCalls = []struct {
	name string
	call func(ctx context.Context, s Store) error
}{
	{"Bind", func(ctx context.Context, s Store) error {
		_, err := s.Bind(ctx, Binding{ConnID: "c9", UserID: "u", Action: "a", Node: "n"})
		return err
	}},
	{"Unbind", func(ctx context.Context, s Store) error { _, err := s.Unbind(ctx, "c1"); return err }},
	{"Get", func(ctx context.Context, s Store) error { _, err := s.Get(ctx, "c1"); return err }},
	{"UserBindings", func(ctx context.Context, s Store) error { _, err := s.UserBindings(ctx, "u"); return err }},
	{"ActionConns", func(ctx context.Context, s Store) error { _, err := s.ActionConns(ctx, "a"); return err }},
	{"ActionUsers", func(ctx context.Context, s Store) error { _, err := s.ActionUsers(ctx, "a"); return err }},
	{"CountUser", func(ctx context.Context, s Store) error { _, err := s.CountUser(ctx, "a", "u"); return err }},
	{"CountAction", func(ctx context.Context, s Store) error { _, err := s.CountAction(ctx, "a"); return err }},
	{"Heartbeat", func(ctx context.Context, s Store) error { _, err := s.Heartbeat(ctx, "n", time.Minute); return err }},
	{"Reap", func(ctx context.Context, s Store) error { _, err := s.Reap(ctx); return err }},
	{"Restore", func(ctx context.Context, s Store) error {
		return s.Restore(ctx, []Binding{{ConnID: "c1", UserID: "u", Action: "a", Node: "n"}})
	}},
	{"RemoveNode", func(ctx context.Context, s Store) error { _, err := s.RemoveNode(ctx, "n"); return err }},
	{"Ping", func(ctx context.Context, s Store) error { return s.Ping(ctx) }},
}

// assertUnavailable checks that every Store method, called concurrently,
// fails with ErrUnavailable within timeout plus slack (Bind: twice the
// timeout, as it may roll back). The slack is generous: the point is that
// no call hangs, on a machine that may be busy with other tests.
func assertUnavailable(t *testing.T, s Store, timeout, slack time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range storeCalls {
		limit := timeout + slack
		if c.name == "Bind" {
			limit += timeout
		}
		wg.Go(func() {
			start := time.Now()
			err := c.call(t.Context(), s)
			if took := time.Since(start); took > limit {
				t.Errorf("%s took %v, want at most %v", c.name, took, limit)
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s: err = %v, want ErrUnavailable", c.name, err)
			}
		})
	}
	wg.Wait()
}

func TestRedisStoreStopped(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := newRedisStore(t, srv.URL(), RedisOptions{})
	heartbeat(t, s, "n", time.Minute)
	bind(t, s, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n"})
	srv.Stop()
	// Refused connections fail fast; DefaultRedisTimeout bounds the rest.
	assertUnavailable(t, s, DefaultRedisTimeout, 2*time.Second)
}

func TestRedisClusterStoreStopped(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	s := newRedisStore(t, cl.URL(), RedisOptions{})
	heartbeat(t, s, "n", time.Minute)
	bind(t, s, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n"})
	cl.Stop()
	assertUnavailable(t, s, DefaultRedisTimeout, 2*time.Second)
}

// TestRedisStoreHung: a Redis that accepts connections and never answers
// costs each call at most the store's Timeout.
func TestRedisStoreHung(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	})
	const timeout = 300 * time.Millisecond
	s := newRedisStore(t, "redis://"+l.Addr().String(), RedisOptions{Timeout: timeout})
	assertUnavailable(t, s, timeout, 2*time.Second)
}

func TestRedisStoreContext(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := newRedisStore(t, srv.URL(), RedisOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, c := range storeCalls {
		err := c.call(ctx, s)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled and not ErrUnavailable", c.name, err)
		}
	}
	// A deadline that passes means Redis did not answer in time.
	ctx, cancel = context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past its deadline: err = %v, want ErrUnavailable and context.DeadlineExceeded", err)
	}
}

// TestRedisStoreRestart: Redis restarts empty; the node writes its
// bindings back with Restore and every query sees them again.
func TestRedisStoreRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := newRedisStore(t, srv.URL(), RedisOptions{})
	ctx := t.Context()
	at := time.UnixMilli(1_700_000_000_123)
	live := []Binding{
		{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1", ConnectedAt: at},
		{ConnID: "c2", UserID: "bob", Action: "chat", Node: "n1", ConnectedAt: at},
		{ConnID: "c3", UserID: "alice", Action: "lobby", Node: "n1", ConnectedAt: at},
	}
	heartbeat(t, s, "n1", time.Minute)
	for _, b := range live {
		bind(t, s, b)
	}

	srv.Restart()
	// The first calls may meet connections to the old process; they fail
	// or retry, and the store answers again.
	waitFor(t, "store answers after restart", func() bool { return s.Ping(ctx) == nil })
	if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after restart: err = %v, want ErrNotFound (Redis restarted empty)", err)
	}

	heartbeat(t, s, "n1", time.Minute)
	if err := s.Restore(ctx, live); err != nil {
		t.Fatal(err)
	}
	for _, b := range live {
		got, err := s.Get(ctx, b.ConnID)
		if err != nil {
			t.Fatal(err)
		}
		assertBinding(t, got, b)
	}
	if users, _ := s.ActionUsers(ctx, "chat"); !slices.Equal(users, []string{"alice", "bob"}) {
		t.Errorf("ActionUsers(chat) after Restore = %v, want [alice bob]", users)
	}
	if ub, _ := s.UserBindings(ctx, "alice"); !slices.Equal(connIDs(ub), []string{"c1", "c3"}) {
		t.Errorf("UserBindings(alice) after Restore = %v, want c1 c3", connIDs(ub))
	}
	// Nothing to reap: the node beat before restoring.
	if rs, err := s.Reap(ctx); err != nil || len(rs) != 0 {
		t.Errorf("Reap after Restore = %v, %v; want nothing", rs, err)
	}
	// The restored bindings are whole: a new device is not first, and the
	// last one out is last.
	if bind(t, s, Binding{ConnID: "c4", UserID: "bob", Action: "chat", Node: "n1"}) {
		t.Error("Bind of bob's second device after Restore: first = true, want false")
	}
	rs, err := s.RemoveNode(ctx, "n1")
	if err != nil || len(rs) != 4 {
		t.Fatalf("RemoveNode = %v, %v; want 4 bindings", rs, err)
	}
}

// TestRedisBindRollback: a Bind that times out while Redis is stalled
// (its script runs once Redis wakes up) leaves no binding behind: Bind
// removes what it may have written before returning its error. The stall
// (1.5 s) outlasts the Bind (1 s) but not its rollback (1 s more).
func TestRedisBindRollback(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := newRedisStore(t, srv.URL(), RedisOptions{Timeout: time.Second})
	ctx := t.Context()
	heartbeat(t, s, "n1", time.Minute)
	// Load the bind script (a stalled EVALSHA of an unknown script would
	// do nothing) and leave a ready connection in the pool.
	bind(t, s, Binding{ConnID: "c0", UserID: "v", Action: "a", Node: "n1"})
	stalled := make(chan error, 1)
	go func() {
		_, err := srv.Do("DEBUG", "SLEEP", "1.5")
		stalled <- err
	}()
	// The stall has begun once another client's PING times out (the
	// store's own pooled connection stays ready, so Bind's script is sent).
	probe := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	defer probe.Close()
	waitFor(t, "Redis to stall", func() bool {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		return probe.Ping(pctx).Err() != nil
	})
	_, err := s.Bind(ctx, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n1"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Bind during a stall: err = %v, want ErrUnavailable", err)
	}
	if err := <-stalled; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after a failed Bind: %v, want ErrNotFound", err)
	}
	if n, err := s.CountUser(ctx, "a", "u"); err != nil || n != 0 {
		t.Fatalf("CountUser after a failed Bind = %d, %v; want 0", n, err)
	}
}
