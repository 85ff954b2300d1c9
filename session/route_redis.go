package session

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The routing side of RedisStore: the script that publishes one message to
// the nodes holding its target, and the channel names it publishes on. It
// lives here, beside the keys it reads; the broker only runs it.

//go:embed lua/route.lua
var luaRoute string

var routeScript = redis.NewScript(luaHistory + "\n" + luaRoute)

// ErrBindingsLost: the store no longer holds this node's heartbeat (Redis
// restarted empty, was flushed, or this node was reaped after a stall), so
// it lost this node's bindings too. Nothing was published; the node must
// Restore its bindings.
var ErrBindingsLost = errors.New("session: this node's bindings are gone from the store")

// Target is what a routed message is addressed to: the connections of
// User in Action, or of the whole Action when User is empty.
type Target struct {
	Action string
	User   string
}

// RouteResult is what the route script found.
type RouteResult struct {
	// Reached counts the target's connections on other nodes whose
	// subscription took the message.
	Reached int
	// Missed counts the target's connections on other nodes that hold no
	// subscription any more (a node that died, or whose subscription
	// connection was lost): the message did not reach them.
	Missed int
}

// Routed is one envelope for Route: its wire form up to its seq field
// (Header), the seq field's content (Seq, "" for none) and the frame.
// With History, the envelope is appended to t's history first and
// carries the entry's id in its Conn field: Header must then end with
// empty Conn and Node fields.
type Routed struct {
	Header  []byte
	Seq     string
	Frame   []byte
	History bool
}

// Route queues on pipe the script that publishes m on the channel of t
// for every node except node that holds connections of t, and counts
// them. eval sends the whole script (EVAL) instead of its digest; use it
// after NOSCRIPT. Read the result with ParseRoute.
func (s *RedisStore) Route(ctx context.Context, pipe redis.Pipeliner, t Target, node string, m Routed, eval bool) *redis.Cmd {
	keys := make([]string, 2, 3)
	var chPrefix string
	if t.User != "" {
		keys[0] = s.userRouteKey(t.Action, t.User)
		chPrefix = s.userChannelPrefix(t.Action, t.User)
	} else {
		keys[0] = s.actionRouteKey(t.Action)
		chPrefix = s.actionChannelPrefix(t.Action)
	}
	keys[1] = s.historyKey(t)
	publish := "PUBLISH"
	if s.cluster {
		publish = "SPUBLISH"
	} else {
		keys = append(keys, s.nodeKey(node))
	}
	maxlen := 0
	if m.History {
		maxlen = historyLen(len(m.Frame))
	}
	if eval {
		return routeScript.Eval(ctx, pipe, keys, chPrefix, m.Header, m.Frame, node, publish, m.Seq, maxlen, HistoryTTL.Milliseconds())
	}
	return routeScript.EvalSha(ctx, pipe, keys, chPrefix, m.Header, m.Frame, node, publish, m.Seq, maxlen, HistoryTTL.Milliseconds())
}

// ParseRoute reads the answer of a Route script: ErrBindingsLost when the
// store lost this node's bindings, or Redis's own error.
func ParseRoute(c *redis.Cmd) (RouteResult, error) {
	v, err := c.Int64Slice()
	if err != nil {
		return RouteResult{}, err
	}
	if len(v) != 2 {
		return RouteResult{}, fmt.Errorf("session: unexpected route reply %v", v)
	}
	if v[0] < 0 {
		return RouteResult{}, ErrBindingsLost
	}
	return RouteResult{Reached: int(v[0]), Missed: int(v[1])}, nil
}

// Channel names. A node subscribes to one channel per target it holds
// connections of, suffixed with its own id, so that a publish reaches only
// nodes that hold the target and its answer says which nodes took it. The
// target's tag puts the channel in the slot of the target's keys: on a
// cluster the script's SPUBLISH stays on the shard it runs on.

func (s *RedisStore) userChannelPrefix(action, user string) string {
	return s.prefix + "ch:u:" + action + "|" + s.tag(user) + "#"
}

func (s *RedisStore) actionChannelPrefix(action string) string {
	return s.prefix + "ch:a:" + s.tag(action) + "#"
}

// Channel returns the channel on which node receives messages for t.
func (s *RedisStore) Channel(t Target, node string) string {
	if t.User != "" {
		return s.userChannelPrefix(t.Action, t.User) + node
	}
	return s.actionChannelPrefix(t.Action) + node
}

// NodeChannel returns node's own channel: server API requests for one of
// its connections, and its liveness probe.
func (s *RedisStore) NodeChannel(node string) string {
	return s.prefix + "ch:n:" + s.tag(node)
}

// Sharded reports whether channels are sharded (SSUBSCRIBE/SPUBLISH): on a
// Redis Cluster.
func (s *RedisStore) Sharded() bool { return s.cluster }

// Client returns the Redis client the store uses.
func (s *RedisStore) Client() redis.UniversalClient { return s.c }
