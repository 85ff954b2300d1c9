package session

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Store = (*RedisStore)(nil)

// Defaults of RedisOptions.
const (
	DefaultRedisPrefix  = "sb:"
	DefaultRedisTimeout = 3 * time.Second
)

const (
	// redisBatch bounds the bindings one script call or pipeline handles in
	// Reap, RemoveNode and Restore, so that no single call blocks Redis (or
	// outlasts the round-trip timeout) however many connections a node had.
	redisBatch = 500
	// reapLockTTL is how long a cluster reaper holds a dead node to itself.
	// If that reaper dies, another takes over after this.
	reapLockTTL = 10 * time.Second
)

// RedisOptions configures a RedisStore. The zero value means the defaults.
type RedisOptions struct {
	// Prefix starts every key (REDIS_PREFIX), so that deployments can share
	// a Redis. Default "sb:".
	Prefix string
	// Timeout bounds each call: a call that takes longer fails with
	// ErrUnavailable. A failed Bind may take as long again to remove what
	// it wrote; Reap, RemoveNode and Restore, which work in batches of 500
	// bindings, apply it to each batch. Default 3 s.
	Timeout time.Duration
	// MaxUserConnections caps a user's connections across all actions and
	// nodes (MAX_CONNECTIONS_PER_USER); Bind refuses one more with
	// ErrTooManyConnections. The check is part of the bind script: exact
	// under races, no extra round trip. Default 0: no cap.
	MaxUserConnections int
}

// RedisStore is a Store in Redis, shared by every node. It is safe for
// concurrent use and holds no state of its own besides the client.
//
// Keys, with the default prefix "sb:" (values are plain strings, so
// redis-cli shows them as they are):
//
//	sb:conn:{connection_id}   hash: user_id, action, node, connected_at (Unix ms, decimal)
//	sb:action:{action}        hash: {connection_id} → user_id
//	sb:user:{user_id}         hash: {connection_id} → action
//	sb:node:{node_id}         string with a TTL (Heartbeat): the node is alive; its
//	                          value is the Unix ms time of the last heartbeat
//	sb:nodeconns:{node_id}    set of the node's connection ids, so a dead node's
//	                          bindings are found without scanning the keyspace
//	sb:nodes                  set of node ids that have bindings or heartbeats,
//	                          the nodes Reap looks at
//	sb:reaplock:{node_id}     string with a TTL, cluster only: the reaper that
//	                          currently removes a dead node's bindings
//
// An emptied hash or set disappears, as Redis does; a binding leaves no key
// behind once it is removed.
//
// On a single Redis (a *redis.Client, including a Sentinel failover client)
// Bind, Unbind, Restore, Reap and RemoveNode each run as a Lua script: every
// binding is written or removed whole, in one round trip, and readers never
// see half of one. Reap and RemoveNode handle up to 500 bindings per script
// call, each call atomic. (Redis does not undo a script that fails half-way,
// which only foreign data of the wrong type under the prefix can cause.) A
// Bind that fails after its script may have run, e.g. on a timeout, unbinds
// the connection again before returning.
//
// On a Redis Cluster (a *redis.ClusterClient, or a *redis.Ring) the keys of
// one binding lie in different hash slots, so no script can cover them.
// There, each binding is written with per-key commands, pipelined, in an
// order chosen so that whatever an interrupted call leaves is found and
// removed later:
//
//   - Bind adds the id to sb:nodeconns:{node} and the node to sb:nodes, then
//     writes sb:conn:{id}, then sb:user:{user_id} and sb:action:{action}
//     (one pipeline; three round trips in all). A reader may briefly see
//     the conn hash before the user and action entries. If a step fails,
//     Bind removes what it wrote before returning the error (best effort:
//     if Redis is gone, RemoveNode or a reaper cleans up later).
//   - Unbind and the reapers remove the user and action entries first (one
//     pipeline), then the conn hash and the nodeconns entry, so an
//     interrupted removal keeps the record a retry or reaper needs.
//   - A single-key script on sb:user:{user_id} decides first and last: it
//     counts the user's other connections in the action and adds or
//     deletes the entry in one step. So concurrent Binds of one user report
//     exactly one first, concurrent removals exactly one last, and a binding
//     removed concurrently by Unbind, RemoveNode and reapers is reported by
//     exactly one of them (the one whose delete of the user entry took
//     effect; the others get ErrNotFound or skip it).
//   - Reap locks each dead node (SET NX PX, 10 s) so that one reaper does the
//     work; the user-entry script above is what makes each binding returned
//     exactly once even if the lock expires mid-way.
//   - Restore creates each conn hash only if it is absent (a single-key
//     script), then writes the other entries of the bindings it created and
//     of those it found already there as given (what an interrupted Restore
//     left); the entry scripts add nothing that is present.
//
// The store does not own the client: Close leaves it open for whoever
// created it (it may be shared with the broker), who closes it.
type RedisStore struct {
	c            redis.UniversalClient
	prefix       string
	timeout      time.Duration
	cluster      bool
	maxUserConns int
}

// NewRedisStore returns a RedisStore on c. It does no I/O. A client from
// NewRedisClient bounds every call to a few seconds.
func NewRedisStore(c redis.UniversalClient, opts RedisOptions) *RedisStore {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	return &RedisStore{c: c, prefix: opts.Prefix, timeout: opts.Timeout, cluster: IsCluster(c),
		maxUserConns: max(opts.MaxUserConnections, 0)}
}

// tag returns s as it appears in key names: as it is on a single Redis,
// and as a hash tag ("{s}") on a cluster, so that every key of one user
// (or one action, or one connection) hashes to the same slot.
func (s *RedisStore) tag(x string) string {
	if s.cluster {
		return "{" + x + "}"
	}
	return x
}

// Key names. An action never contains '|' (ValidAction), so
// "{action}|{user}" is unambiguous.
func (s *RedisStore) connKey(id string) string       { return s.prefix + "conn:" + s.tag(id) }
func (s *RedisStore) actionKey(action string) string { return s.prefix + "action:" + s.tag(action) }
func (s *RedisStore) userKey(user string) string     { return s.prefix + "user:" + s.tag(user) }
func (s *RedisStore) banKey(user string) string      { return s.prefix + "ban:" + s.tag(user) }
func (s *RedisStore) userRouteKey(action, user string) string {
	return s.prefix + "uroute:" + action + "|" + s.tag(user)
}
func (s *RedisStore) actionRouteKey(action string) string {
	return s.prefix + "aroute:" + s.tag(action)
}
func (s *RedisStore) nodeKey(node string) string { return s.prefix + "node:" + node }
func (s *RedisStore) nodeConnsKey(node string) string {
	return s.prefix + "nodeconns:" + node
}
func (s *RedisStore) nodesKey() string               { return s.prefix + "nodes" }
func (s *RedisStore) reapLockKey(node string) string { return s.prefix + "reaplock:" + node }

// bindRefusal maps a bind script's negative answers to errors.
func bindRefusal(n int) error {
	switch n {
	case -2:
		return ErrTooManyConnections
	case -3:
		return ErrBanned
	}
	return nil
}

// rt runs one round trip to Redis under the store's timeout.
func (s *RedisStore) rt(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return fn(ctx)
}

// fail wraps err from operation op. The caller's cancellation stays a plain
// context.Canceled; everything that means Redis did not answer in time or
// could not be reached (the caller's deadline included) wraps
// ErrUnavailable; Redis's own error replies, such as WRONGTYPE, are wrapped
// as they are.
func (s *RedisStore) fail(ctx context.Context, op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return err
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, ctx.Err())
		}
		return fmt.Errorf("session: redis %s: %w", op, ctx.Err())
	case unavailable(err):
		return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
	default:
		return fmt.Errorf("session: redis %s: %w", op, err)
	}
}

// unavailable reports whether err means Redis cannot serve now: a network
// error, a timeout, a closed client, or an error reply that says so.
func unavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true
	}
	if _, ok := redis.IsMovedError(err); ok {
		return true
	}
	if _, ok := redis.IsAskError(err); ok {
		return true
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
		redis.IsClusterDownError(err) || redis.IsTryAgainError(err) ||
		redis.IsMasterDownError(err) || redis.IsMaxClientsError(err) ||
		redis.IsAuthError(err) || redis.IsOOMError(err) ||
		redis.IsNoReplicasError(err) || redis.HasErrorPrefix(err, "BUSY")
}

// MaybeApplied reports whether a Redis command that failed with err may
// have run: anything but a failure to get a connection at all.
func MaybeApplied(err error) bool { return maybeApplied(err) }

// maybeApplied reports whether a call that failed with err may have changed
// data: anything but a failure to get a connection at all.
func maybeApplied(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return !errors.Is(err, redis.ErrPoolTimeout) && !errors.Is(err, redis.ErrClosed)
}

// millis is how connected_at is stored: Unix ms in decimal, "0" for the
// zero time.
func millis(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseMillis(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// connFields returns a conn hash's fields and values.
func connFields(b Binding) []any {
	return []any{"user_id", b.UserID, "action", b.Action, "node", b.Node, "connected_at", millis(b.ConnectedAt)}
}

func parseConn(id string, f map[string]string) Binding {
	return Binding{
		ConnID:      id,
		UserID:      f["user_id"],
		Action:      f["action"],
		Node:        f["node"],
		ConnectedAt: parseMillis(f["connected_at"]),
	}
}

// Lua scripts, embedded from lua/. The single-Redis ones share
// single_common.lua (prepended) and build their keys from the prefix.
var (
	//go:embed lua/single_common.lua
	luaSingleCommon string
	//go:embed lua/single_bind.lua
	luaBind string
	//go:embed lua/single_unbind.lua
	luaUnbind string
	//go:embed lua/single_restore.lua
	luaRestore string
	//go:embed lua/single_reap.lua
	luaReap string
	//go:embed lua/single_remove_node.lua
	luaRemoveNode string

	bindScript       = redis.NewScript(luaSingleCommon + luaBind)
	unbindScript     = redis.NewScript(luaSingleCommon + luaUnbind)
	restoreScript    = redis.NewScript(luaSingleCommon + luaRestore)
	reapScript       = redis.NewScript(luaSingleCommon + luaReap)
	removeNodeScript = redis.NewScript(luaSingleCommon + luaRemoveNode)
)

// parseRemoved decodes a script's {id, user_id, action, node, connected_at, last}.
func parseRemoved(v any) (Removed, error) {
	f, ok := v.([]any)
	if !ok || len(f) != 6 {
		return Removed{}, fmt.Errorf("unexpected script reply %v", v)
	}
	str := make([]string, len(f))
	for i, x := range f {
		if str[i], ok = x.(string); !ok {
			return Removed{}, fmt.Errorf("unexpected script reply %v", v)
		}
	}
	return Removed{
		Binding: Binding{
			ConnID:      str[0],
			UserID:      str[1],
			Action:      str[2],
			Node:        str[3],
			ConnectedAt: parseMillis(str[4]),
		},
		Last: str[5] == "1",
	}, nil
}

// Bind implements Store. It takes at most the store's Timeout, plus as
// much again when it fails and removes what it may have written.
func (s *RedisStore) Bind(ctx context.Context, b Binding) (bool, error) {
	var first bool
	var err error
	if s.cluster {
		opCtx, cancel := context.WithTimeout(ctx, s.timeout)
		first, err = s.bindCluster(opCtx, b)
		cancel()
	} else {
		err = s.rt(ctx, func(ctx context.Context) error {
			n, err := bindScript.Run(ctx, s.c, nil, s.prefix, b.ConnID, b.UserID, b.Action, b.Node, millis(b.ConnectedAt), s.maxUserConns).Int()
			if err != nil {
				return err
			}
			first = n == 1
			return bindRefusal(n)
		})
	}
	if errors.Is(err, ErrTooManyConnections) || errors.Is(err, ErrBanned) {
		return false, err
	}
	if err != nil {
		if maybeApplied(err) {
			s.rollback(ctx, b)
		}
		return false, s.fail(ctx, "bind", err)
	}
	return first, nil
}

// rollback removes what a failed Bind may have written, on a context that
// outlives the caller's cancellation, within the store's Timeout. Its own
// failure is dropped: the Bind error already says the binding is not
// there, and RemoveNode or a reaper removes any remains.
func (s *RedisStore) rollback(ctx context.Context, b Binding) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if s.cluster {
		_, _ = s.removeCluster(ctx, b)
		return
	}
	_ = s.rt(ctx, func(ctx context.Context) error {
		return unbindScript.Run(ctx, s.c, nil, s.prefix, b.ConnID).Err()
	})
}

// Unbind implements Store.
func (s *RedisStore) Unbind(ctx context.Context, connID string) (Removed, error) {
	if s.cluster {
		opCtx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		r, err := s.unbindCluster(opCtx, connID)
		return r, s.fail(ctx, "unbind", err)
	}
	var r Removed
	err := s.rt(ctx, func(ctx context.Context) error {
		v, err := unbindScript.Run(ctx, s.c, nil, s.prefix, connID).Result()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		r, err = parseRemoved(v)
		return err
	})
	return r, s.fail(ctx, "unbind", err)
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, connID string) (Binding, error) {
	var f map[string]string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		f, err = s.c.HGetAll(ctx, s.connKey(connID)).Result()
		return err
	})
	if err != nil {
		return Binding{}, s.fail(ctx, "get", err)
	}
	if len(f) == 0 {
		return Binding{}, ErrNotFound
	}
	return parseConn(connID, f), nil
}

// UserBindings implements Store. The bindings are sorted by connection id.
func (s *RedisStore) UserBindings(ctx context.Context, userID string) ([]Binding, error) {
	var ids []string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		ids, err = s.c.HKeys(ctx, s.userKey(userID)).Result()
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, "user bindings", err)
	}
	slices.Sort(ids)
	bs := make([]Binding, 0, len(ids))
	if len(ids) == 0 {
		return bs, nil
	}
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, s.connKey(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for i, c := range cmds {
			if f := c.Val(); len(f) > 0 { // else unbound meanwhile
				bs = append(bs, parseConn(ids[i], f))
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, "user bindings", err)
	}
	return bs, nil
}

// ActionConns implements Store.
func (s *RedisStore) ActionConns(ctx context.Context, action string) (map[string]string, error) {
	var m map[string]string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		m, err = s.c.HGetAll(ctx, s.actionKey(action)).Result()
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, "action conns", err)
	}
	return m, nil
}

// ActionUsers implements Store.
func (s *RedisStore) ActionUsers(ctx context.Context, action string) ([]string, error) {
	m, err := s.ActionConns(ctx, action)
	if err != nil {
		return nil, err
	}
	return DistinctUsers(m), nil
}

// CountUsers implements Store. It reads the action's hash (one round trip)
// and counts distinct values without sorting them.
func (s *RedisStore) CountUsers(ctx context.Context, action string) (int, error) {
	m, err := s.ActionConns(ctx, action)
	if err != nil {
		return 0, err
	}
	seen := make(map[string]struct{}, len(m))
	for _, u := range m {
		seen[u] = struct{}{}
	}
	return len(seen), nil
}

// CountUser implements Store. It sums the user's route hash in the action
// (one field per node).
func (s *RedisStore) CountUser(ctx context.Context, action, userID string) (int, error) {
	var counts []string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		counts, err = s.c.HVals(ctx, s.userRouteKey(action, userID)).Result()
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, "count user", err)
	}
	n := 0
	for _, c := range counts {
		k, _ := strconv.Atoi(c)
		n += k
	}
	return n, nil
}

// CountAction implements Store.
func (s *RedisStore) CountAction(ctx context.Context, action string) (int, error) {
	var n int64
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		n, err = s.c.HLen(ctx, s.actionKey(action)).Result()
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, "count action", err)
	}
	return int(n), nil
}

// Heartbeat implements Store: it sets sb:node:{node} with a TTL of ttl
// (rounded up to a millisecond), reading its previous value in the same
// command, and adds node to sb:nodes. A heartbeat found missing means
// Redis lost it: restarted empty, flushed, or expired while this node
// could not reach Redis.
func (s *RedisStore) Heartbeat(ctx context.Context, node string, ttl time.Duration) (bool, error) {
	ttl = max(ttl, time.Millisecond)
	var alive bool
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		prev := pipe.SetArgs(ctx, s.nodeKey(node), time.Now().UnixMilli(), redis.SetArgs{TTL: ttl, Get: true})
		pipe.SAdd(ctx, s.nodesKey(), node)
		_, err := pipe.Exec(ctx)
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		alive = prev.Err() == nil
		return err
	})
	return alive, s.fail(ctx, "heartbeat", err)
}

// Reap implements Store. A node that has bindings but never sent a
// heartbeat counts as dead, so a node must Heartbeat before it Binds or
// Restores. On error, Reap returns what it removed before the error along
// with it.
func (s *RedisStore) Reap(ctx context.Context) ([]Removed, error) {
	if s.cluster {
		out, err := s.reapCluster(ctx)
		return out, s.fail(ctx, "reap", err)
	}
	var out []Removed
	for {
		more, err := s.runBatch(ctx, &out, reapScript, s.prefix, redisBatch)
		if err != nil {
			return out, s.fail(ctx, "reap", err)
		}
		if !more {
			return out, nil
		}
	}
}

// RemoveNode implements Store. On error, it returns what it removed before
// the error along with it.
func (s *RedisStore) RemoveNode(ctx context.Context, node string) ([]Removed, error) {
	if s.cluster {
		var out []Removed
		err := s.rt(ctx, func(ctx context.Context) error {
			return s.c.Del(ctx, s.nodeKey(node)).Err()
		})
		if err == nil {
			err = s.drainCluster(ctx, node, &out)
		}
		return out, s.fail(ctx, "remove node", err)
	}
	var out []Removed
	for {
		more, err := s.runBatch(ctx, &out, removeNodeScript, s.prefix, node, redisBatch)
		if err != nil {
			return out, s.fail(ctx, "remove node", err)
		}
		if !more {
			return out, nil
		}
	}
}

// runBatch runs a script that returns {more, removed...}, appending the
// removed bindings to out.
func (s *RedisStore) runBatch(ctx context.Context, out *[]Removed, script *redis.Script, args ...any) (more bool, err error) {
	err = s.rt(ctx, func(ctx context.Context) error {
		res, err := script.Run(ctx, s.c, nil, args...).Slice()
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("empty script reply")
		}
		more = res[0] == int64(1)
		for _, v := range res[1:] {
			r, err := parseRemoved(v)
			if err != nil {
				return err
			}
			*out = append(*out, r)
		}
		return nil
	})
	return more, err
}

// Restore implements Store. Each binding whose conn hash is absent is
// written whole; present ones are left as they are. Call Heartbeat first:
// bindings of a node without a heartbeat are what reapers remove.
func (s *RedisStore) Restore(ctx context.Context, bs []Binding) error {
	for chunk := range slices.Chunk(bs, redisBatch) {
		var err error
		if s.cluster {
			err = s.restoreCluster(ctx, chunk)
		} else {
			args := make([]any, 0, 1+5*len(chunk))
			args = append(args, s.prefix)
			for _, b := range chunk {
				args = append(args, b.ConnID, b.UserID, b.Action, b.Node, millis(b.ConnectedAt))
			}
			err = s.rt(ctx, func(ctx context.Context) error {
				return restoreScript.Run(ctx, s.c, nil, args...).Err()
			})
		}
		if err != nil {
			return s.fail(ctx, "restore", err)
		}
	}
	return nil
}

// Ping implements Store. On a cluster it pings every master.
func (s *RedisStore) Ping(ctx context.Context) error {
	err := s.rt(ctx, func(ctx context.Context) error {
		if cc, ok := s.c.(*redis.ClusterClient); ok {
			return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
				return c.Ping(ctx).Err()
			})
		}
		return s.c.Ping(ctx).Err()
	})
	return s.fail(ctx, "ping", err)
}

// Close implements Store. It does not close the client, which belongs to
// the caller.
func (s *RedisStore) Close() error { return nil }
