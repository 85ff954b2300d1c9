-- Schedules a user.offline, replacing one of the same user and action.
-- KEYS[1] delayed zset, KEYS[2] offline hash;
-- ARGV: key, due (Unix ms), "id at body".
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
