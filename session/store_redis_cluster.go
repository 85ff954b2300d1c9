package session

// The Redis Cluster side of RedisStore: a binding's keys live in different
// hash slots, so no script can span them. Each step is a single-key script
// or command, ordered so that a crash leaves nothing that cannot be found
// and cleaned up (see the RedisStore doc comment for the guarantees).

import (
	"context"
	"crypto/rand"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Single-key scripts, safe on a cluster.
var (
	// KEYS: user hash. ARGV: id, action. Adds the entry; returns first (1/0).
	userBindScript = redis.NewScript(`
local first = 1
local f = redis.call('HGETALL', KEYS[1])
for i = 1, #f, 2 do
  if f[i] ~= ARGV[1] and f[i + 1] == ARGV[2] then first = 0 break end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return first
`)

	// KEYS: user hash. ARGV: id, action. Deletes the entry; returns -1 if it
	// was not there (someone else removed the binding), else last (1/0).
	userUnbindScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return -1 end
for _, a in ipairs(redis.call('HVALS', KEYS[1])) do
  if a == ARGV[2] then return 0 end
end
return 1
`)

	// KEYS: conn hash. ARGV: its field/value pairs. Writes it if absent;
	// returns 1 if it did.
	connCreateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

	// KEYS: lock. ARGV: token. Deletes the lock if it still holds token.
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
)

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
	// 3. The user entry (deciding first) and the action entry.
	var first bool
	err = s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		firstCmd := userBindScript.Eval(ctx, pipe, []string{s.userKey(b.UserID)}, id, b.Action)
		pipe.HSet(ctx, s.actionKey(b.Action), id, b.UserID)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		n, err := firstCmd.Int()
		first = n == 1
		return err
	})
	return first, err
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
		lastCmd := userUnbindScript.Eval(ctx, pipe, []string{s.userKey(b.UserID)}, b.ConnID, b.Action)
		pipe.HDel(ctx, s.actionKey(b.Action), b.ConnID)
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
			lasts[i] = userUnbindScript.Eval(ctx, pipe, []string{s.userKey(b.UserID)}, b.ConnID, b.Action)
			pipe.HDel(ctx, s.actionKey(b.Action), b.ConnID)
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
	return s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.Pipeline()
		for i, b := range bs {
			if n, _ := created[i].Int(); n == 1 {
				pipe.HSet(ctx, s.userKey(b.UserID), b.ConnID, b.Action)
				pipe.HSet(ctx, s.actionKey(b.Action), b.ConnID, b.UserID)
			}
		}
		_, err := pipe.Exec(ctx)
		return err
	})
}
