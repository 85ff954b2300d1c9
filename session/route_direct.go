package session

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/route_direct.lua
var luaRouteDirect string

// routeDirectScript is mailbox_append followed by the direct route.
var routeDirectScript = redis.NewScript(mailboxAppendFunc + "\n" + luaHistory + "\n" + luaRouteDirect)

// Direct is one direct message for RouteDirect.
type Direct struct {
	Action string // the recipient's action
	User   string // the recipient
	Sender string // the sender's user id; "" for the server API (never blocked)
	ID     string // the sender's id for the message, canonical; "" = none (no dedup)
	// Header is the envelope's wire form up to its seq field; the script
	// appends the seq field and the frame.
	Header []byte
	// Frame is the frame's head, ending in `,"seq":`, with a mailbox; the
	// whole frame without one.
	Frame []byte
	// ToSelf: the sending connection is one of the recipient's
	// connections (a message to oneself), so it is not counted.
	ToSelf bool
}

// DirectResult is what routing a direct message did.
type DirectResult struct {
	Reached int   // connections on nodes that took it, this node included
	Missed  int   // connections on nodes that could not take it
	Seq     int64 // its number in the mailbox (0 without one)
	Dup     bool  // a resend within the dedup window: not delivered again
	Blocked bool  // the recipient blocks the sender: dropped
	Trimmed int   // messages retention removed from the mailbox meanwhile
}

// RouteDirect queues on pipe the script that routes one direct message
// in one round trip, on the recipient's shard: the block check, the
// mailbox (mb; nil without one: dedup and append), and a publish to every
// node holding the recipient's connections in the action, the sending
// node included (every recipient then gets the mailbox's messages through
// its node's subscription, in seq order). Without a mailbox the message
// goes to the recipient's history instead (history_redis.go), and the
// envelope carries its entry id. Read the result with ParseDirect.
func (s *RedisStore) RouteDirect(ctx context.Context, pipe redis.Pipeliner, mb *RedisMailbox, d Direct, node string, now time.Time, eval bool) *redis.Cmd {
	route := s.userRouteKey(d.Action, d.User)
	keys := make([]string, 0, 8)
	keys = append(keys, route, s.blocksKey(d.User), s.blockSeqKey(d.User))
	args := make([]any, 0, 14)
	publish := "PUBLISH"
	if s.cluster {
		publish = "SPUBLISH"
	}
	toSelf := "0"
	if d.ToSelf {
		toSelf = "1"
	}
	withMailbox := "0"
	if mb != nil {
		withMailbox = "1"
	}
	args = append(args, s.userChannelPrefix(d.Action, d.User), d.Header, d.Frame, node, publish, d.Sender, withMailbox, toSelf)
	if mb != nil {
		keys = append(keys, mb.AppendKeys(d.User, d.Action, d.Sender, d.ID)...)
		margs := mb.AppendArgs(d.Action, d.ID, d.Frame, now)
		args = append(args, margs[0])
		args = append(args, margs[2:]...)
	} else {
		// The history, then unused keys declared in the recipient's slot.
		keys = append(keys, s.historyKey(Target{Action: d.Action, User: d.User}), route, route, route)
		args = append(args, historyLen(len(d.Frame)), HistoryTTL.Milliseconds())
	}
	if !s.cluster {
		keys = append(keys, s.nodeKey(node))
	}
	if eval {
		return routeDirectScript.Eval(ctx, pipe, keys, args...)
	}
	return routeDirectScript.EvalSha(ctx, pipe, keys, args...)
}

func (s *RedisStore) blockSeqKey(user string) string { return s.prefix + "blockseq:" + s.tag(user) }

// ParseDirect reads the answer of a RouteDirect script: ErrBindingsLost
// when the store lost this node's bindings, or Redis's own error.
func ParseDirect(c *redis.Cmd) (DirectResult, error) {
	v, err := c.Int64Slice()
	if err != nil {
		return DirectResult{}, err
	}
	if len(v) != 5 {
		return DirectResult{}, fmt.Errorf("session: unexpected direct route reply %v", v)
	}
	if v[0] < 0 {
		return DirectResult{}, ErrBindingsLost
	}
	return DirectResult{Reached: int(v[0]), Missed: int(v[1]), Seq: v[2], Dup: v[3] == 1, Blocked: v[3] == 2, Trimmed: int(v[4])}, nil
}
