package session

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Moderation = (*RedisStore)(nil)

// Keys (in the user's slot on a cluster):
//
//	sb:ban:{user_id}      hash: until (Unix ms), reason; expires with the ban
//	sb:blocks:{user_id}   set of the user ids the user blocks

func (s *RedisStore) blocksKey(user string) string { return s.prefix + "blocks:" + s.tag(user) }

// SetBan implements Moderation. The key expires when the ban does, so the
// bind script's check (EXISTS) needs no clock.
func (s *RedisStore) SetBan(ctx context.Context, user string, ban Ban) error {
	ttl := time.Until(ban.Until)
	if ttl <= 0 {
		_, err := s.DeleteBan(ctx, user)
		return err
	}
	err := s.rt(ctx, func(ctx context.Context) error {
		pipe := s.c.TxPipeline()
		pipe.Del(ctx, s.banKey(user))
		pipe.HSet(ctx, s.banKey(user), "until", ban.Until.UnixMilli(), "reason", ban.Reason)
		pipe.PExpireAt(ctx, s.banKey(user), ban.Until)
		_, err := pipe.Exec(ctx)
		return err
	})
	return s.fail(ctx, "ban", err)
}

// GetBan implements Moderation.
func (s *RedisStore) GetBan(ctx context.Context, user string) (Ban, bool, error) {
	var f map[string]string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		f, err = s.c.HGetAll(ctx, s.banKey(user)).Result()
		return err
	})
	if err != nil {
		return Ban{}, false, s.fail(ctx, "get ban", err)
	}
	if len(f) == 0 {
		return Ban{}, false, nil
	}
	ms, _ := strconv.ParseInt(f["until"], 10, 64)
	return Ban{Until: time.UnixMilli(ms), Reason: f["reason"]}, true, nil
}

// DeleteBan implements Moderation.
func (s *RedisStore) DeleteBan(ctx context.Context, user string) (bool, error) {
	var n int64
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		n, err = s.c.Del(ctx, s.banKey(user)).Result()
		return err
	})
	return n > 0, s.fail(ctx, "delete ban", err)
}

// blockScript: KEYS: blocks set. ARGV: other, max. Returns 1 if added, 0
// if present, -1 if the set is full.
var blockScript = redis.NewScript(`
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
return redis.call('SADD', KEYS[1], ARGV[1])
`)

// Block implements Moderation.
func (s *RedisStore) Block(ctx context.Context, user, other string) (bool, error) {
	var n int
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		n, err = blockScript.Run(ctx, s.c, []string{s.blocksKey(user)}, other, MaxBlocks).Int()
		return err
	})
	if err != nil {
		return false, s.fail(ctx, "block", err)
	}
	if n < 0 {
		return false, ErrTooManyBlocks
	}
	return n == 1, nil
}

// Unblock implements Moderation.
func (s *RedisStore) Unblock(ctx context.Context, user, other string) (bool, error) {
	var n int64
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		pipe := s.c.TxPipeline()
		rem := pipe.SRem(ctx, s.blocksKey(user), other)
		pipe.HDel(ctx, s.blockSeqKey(user), other)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		n = rem.Val()
		return nil
	})
	return n > 0, s.fail(ctx, "unblock", err)
}

// Blocks implements Moderation.
func (s *RedisStore) Blocks(ctx context.Context, user string) ([]string, error) {
	var out []string
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		out, err = s.c.SMembers(ctx, s.blocksKey(user)).Result()
		return err
	})
	if err != nil {
		return nil, s.fail(ctx, "blocks", err)
	}
	slices.Sort(out)
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// Blocked implements Moderation.
func (s *RedisStore) Blocked(ctx context.Context, user, other string) (bool, error) {
	var ok bool
	err := s.rt(ctx, func(ctx context.Context) (err error) {
		ok, err = s.c.SIsMember(ctx, s.blocksKey(user), other).Result()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return ok, s.fail(ctx, "blocked", err)
}
