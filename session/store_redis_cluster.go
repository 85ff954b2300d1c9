package session

// The Redis Cluster side of RedisStore: a binding's keys live in different
// hash slots, so no script can span them. Each step is a single-key script
// or command, ordered so that a crash leaves nothing that cannot be found
// and cleaned up (see the RedisStore doc comment for the guarantees).

import (
	"context"
	"crypto/rand"
	_ "embed"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Single-slot scripts, safe on a cluster (lua/cluster_*.lua).
var (
	//go:embed lua/cluster_user_add.lua
	luaUserAdd string
	//go:embed lua/cluster_user_remove.lua
	luaUserRemove string
	//go:embed lua/cluster_action_add.lua
	luaActionAdd string
	//go:embed lua/cluster_action_remove.lua
	luaActionRemove string

	userAddScript      = redis.NewScript(luaUserAdd)
	userRemoveScript   = redis.NewScript(luaUserRemove)
	actionAddScript    = redis.NewScript(luaActionAdd)
	actionRemoveScript = redis.NewScript(luaActionRemove)

	// KEYS: conn hash. ARGV: its field/value pairs (connFields). Writes it
	// if absent and returns 1; returns 2 if present with the same user,
	// action and node, 0 if present with others.
	connCreateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  local f = redis.call('HMGET', KEYS[1], 'user_id', 'action', 'node')
  if f[1] == ARGV[2] and f[2] == ARGV[4] and f[3] == ARGV[6] then return 2 end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

	// KEYS: lock. ARGV: token. Deletes the lock if it still holds token.
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
)

// userAdd queues the user-slot step of writing b: the user entry and the
// user's route count on b's node. maxConns -1 skips the cap and ban checks.
func (s *RedisStore) userAdd(ctx context.Context, pipe redis.Scripter, b Binding, maxConns int) *redis.Cmd {
	return runScript(ctx, pipe, userAddScript, []string{s.userKey(b.UserID), s.userRouteKey(b.Action, b.UserID), s.banKey(b.UserID)},
		b.ConnID, b.Action, b.Node, maxConns)
}

// actionAdd queues the action-slot step of writing b.
func (s *RedisStore) actionAdd(ctx context.Context, pipe redis.Scripter, b Binding) *redis.Cmd {
	return runScript(ctx, pipe, actionAddScript, []string{s.actionKey(b.Action), s.actionRouteKey(b.Action)}, b.ConnID, b.UserID, b.Node)
}

// runScript runs script on c: EVALSHA with a fallback to EVAL on a client,
// EVAL in a pipeline (whose EVALSHA could not fall back after a restart
// emptied Redis's script cache).
func runScript(ctx context.Context, c redis.Scripter, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	if _, pipelined := c.(redis.Pipeliner); pipelined {
		return script.Eval(ctx, c, keys, args...)
	}
	return script.Run(ctx, c, keys, args...)
}

func (s *RedisStore) bindCluster(ctx context.Context, b Binding) (bool, error) {
	id := b.ConnID
	// 1. Index the connection on its node first: whatever a failure leaves
	// is then found by RemoveNode and the reapers.
	var old map[string]string
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		oldCmd := pipe.HGetAll(ctx, s.connKey(id))
		pipe.SAdd(ctx, s.nodeConnsKey(b.Node), id)
		pipe.SAdd(ctx, s.nodesKey(), b.Node)
		_, err := pipe.Exec(ctx)
		old = oldCmd.Val()
		return err
	})
	if err != nil {
		return false, err
	}
	if len(old) > 0 {
		// A rebind replaces the old binding, as MemoryStore does.
		ob := parseConn(id, old)
		if _, err := s.removeCluster(ctx, ob); err != nil {
			return false, err
		}
		if ob.Node == b.Node {
			if err := s.rt(ctx, func(ctx context.Context) error {
				return s.c.SAdd(ctx, s.nodeConnsKey(b.Node), id).Err()
			}); err != nil {
				return false, err
			}
		}
	}
	// 2. The conn hash, from which every other entry can be found.
	if err := s.rt(ctx, func(ctx context.Context) error {
		return s.c.HSet(ctx, s.connKey(id), connFields(b)...).Err()
	}); err != nil {
		return false, err
	}
	// 3. The user entry (deciding first, the cap and bans), then the action
	// entry: the action's only once the user's was accepted.
	var n int
	err = s.rt(ctx, func(ctx context.Context) (err error) {
		n, err = s.userAdd(ctx, s.c, b, s.maxUserConns).Int()
		return err
	})
	if err == nil {
		if err = bindRefusal(n); err != nil {
			_ = s.rt(context.WithoutCancel(ctx), func(ctx context.Context) error {
				pipe := s.c.Pipeline()
				pipe.Del(ctx, s.connKey(id))
				pipe.SRem(ctx, s.nodeConnsKey(b.Node), id)
				_, err := pipe.Exec(ctx)
				return err
			})
			return false, err
		}
	}
	if err == nil {
		err = s.rt(ctx, func(ctx context.Context) error {
			return s.actionAdd(ctx, s.c, b).Err()
		})
	}
	return n == 1, err
}

func (s *RedisStore) unbindCluster(ctx context.Context, connID string) (Removed, error) {
	var f map[string]string
	if err := s.rt(ctx, func(ctx context.Context) (err error) {
		f, err = s.c.HGetAll(ctx, s.connKey(connID)).Result()
		return err
	}); err != nil {
		return Removed{}, err
	}
	if len(f) == 0 {
		return Removed{}, ErrNotFound
	}
	b := parseConn(connID, f)
	last, err := s.removeCluster(ctx, b)
	if err != nil {
		return Removed{}, err
	}
	if last < 0 {
		return Removed{}, ErrNotFound // removed by someone else meanwhile
	}
	return Removed{Binding: b, Last: last == 1}, nil
}

// removeCluster deletes binding b entry by entry (user, action, conn,
// nodeconns) and returns the user script's verdict: -1 if the user entry
// was already gone (another remover reports b), else 1 if b was the user's
// last connection in its action, 0 if not.
func (s *RedisStore) removeCluster(ctx context.Context, b Binding) (int, error) {
	var last int
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		lastCmd := s.userRemove(ctx, pipe, b)
		s.actionRemove(ctx, pipe, b)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		var err error
		last, err = lastCmd.Int()
		return err
	})
	if err != nil {
		return 0, err
	}
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		pipe.Del(ctx, s.connKey(b.ConnID))
		pipe.SRem(ctx, s.nodeConnsKey(b.Node), b.ConnID)
		_, err := pipe.Exec(ctx)
		return err
	})
	return last, err
}

func (s *RedisStore) userRemove(ctx context.Context, pipe redis.Scripter, b Binding) *redis.Cmd {
	return runScript(ctx, pipe, userRemoveScript, []string{s.userKey(b.UserID), s.userRouteKey(b.Action, b.UserID)}, b.ConnID, b.Node)
}

func (s *RedisStore) actionRemove(ctx context.Context, pipe redis.Scripter, b Binding) *redis.Cmd {
	return runScript(ctx, pipe, actionRemoveScript, []string{s.actionKey(b.Action), s.actionRouteKey(b.Action)}, b.ConnID, b.Node)
}

func (s *RedisStore) reapCluster(ctx context.Context) ([]Removed, error) {
	var nodes []string
	alive := map[string]*redis.IntCmd{}
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		nodes, err = s.c.SMembers(ctx, s.nodesKey()).Result()
		if err != nil || len(nodes) == 0 {
			return err
		}
		pipe := s.c.Pipeline()
		for _, n := range nodes {
			alive[n] = pipe.Exists(ctx, s.nodeKey(n))
		}
		_, err = pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []Removed
	for _, node := range nodes {
		if alive[node].Val() == 1 {
			continue
		}
		token := rand.Text()
		var locked, back bool
		err := s.rt(ctx, func(ctx context.Context) (err error) {
			locked, err = s.c.SetNX(ctx, s.reapLockKey(node), token, reapLockTTL).Result()
			if err != nil || !locked {
				return err
			}
			// The node may have beaten again since it was found dead.
			n, err := s.c.Exists(ctx, s.nodeKey(node)).Result()
			back = n == 1
			return err
		})
		if err != nil && !locked {
			return out, err
		}
		if !locked {
			continue // another reaper has it
		}
		if err == nil && !back {
			err = s.drainCluster(ctx, node, &out)
		}
		// Unlock even if ctx is done; if this fails, the lock expires.
		_ = s.rt(context.WithoutCancel(ctx), func(ctx context.Context) error {
			return unlockScript.Run(ctx, s.c, []string{s.reapLockKey(node)}, token).Err()
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// drainCluster removes node's bindings in batches, appending to out those
// whose removal this call decided (see removeCluster), and finally drops
// node from sb:nodes if it has no bindings left (a live node adds itself
// back with its next heartbeat).
func (s *RedisStore) drainCluster(ctx context.Context, node string, out *[]Removed) error {
	var ids []string
	if err := s.rt(ctx, func(ctx context.Context) (err error) {
		ids, err = s.c.SMembers(ctx, s.nodeConnsKey(node)).Result()
		return err
	}); err != nil {
		return err
	}
	for chunk := range slices.Chunk(ids, redisBatch) {
		if err := s.drainChunk(ctx, node, chunk, out); err != nil {
			return err
		}
	}
	return s.rt(ctx, func(ctx context.Context) error {
		n, err := s.c.SCard(ctx, s.nodeConnsKey(node)).Result()
		if err != nil || n > 0 {
			return err
		}
		return s.c.SRem(ctx, s.nodesKey(), node).Err()
	})
}

func (s *RedisStore) drainChunk(ctx context.Context, node string, ids []string, out *[]Removed) error {
	bs := make([]Binding, 0, len(ids))
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, s.connKey(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for i, c := range cmds {
			if f := c.Val(); len(f) > 0 {
				bs = append(bs, parseConn(ids[i], f))
			}
		}
		return nil
	})
	if err != nil || len(bs) == 0 {
		if err == nil {
			err = s.rt(ctx, func(ctx context.Context) error {
				return s.c.SRem(ctx, s.nodeConnsKey(node), toAny(ids)...).Err()
			})
		}
		return err
	}
	lasts := make([]*redis.Cmd, len(bs))
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for i, b := range bs {
			lasts[i] = s.userRemove(ctx, pipe, b)
			s.actionRemove(ctx, pipe, b)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for _, b := range bs {
			pipe.Del(ctx, s.connKey(b.ConnID))
		}
		pipe.SRem(ctx, s.nodeConnsKey(node), toAny(ids)...)
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for i, b := range bs {
		if last, _ := lasts[i].Int(); last >= 0 {
			*out = append(*out, Removed{Binding: b, Last: last == 1})
		}
	}
	return nil
}

func toAny(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

func (s *RedisStore) restoreCluster(ctx context.Context, bs []Binding) error {
	// Same order as Bind: node index, conn hash, user and action entries.
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for _, b := range bs {
			pipe.SAdd(ctx, s.nodeConnsKey(b.Node), b.ConnID)
			pipe.SAdd(ctx, s.nodesKey(), b.Node)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	created := make([]*redis.Cmd, len(bs))
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for i, b := range bs {
			created[i] = connCreateScript.Eval(ctx, pipe, []string{s.connKey(b.ConnID)}, connFields(b)...)
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return err
	}
	// The user and action entries of the bindings whose conn hash was
	// created now, and of those whose conn hash was already there as b: a
	// Restore interrupted after the step above (a cluster still coming up
	// answers CLUSTERDOWN for some slots) left conn hashes without them.
	// Both scripts add nothing that is present.
	return s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for i, b := range bs {
			if n, _ := created[i].Int(); n == 1 || n == 2 {
				s.userAdd(ctx, pipe, b, -1)
				s.actionAdd(ctx, pipe, b)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	})
}
