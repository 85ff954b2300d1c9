package session

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The history of a target: the last messages routed to an action, or to
// a user in an action without a mailbox, kept briefly so that a node whose
// subscription broke can replay what Redis dropped with it (Redis discards
// what it had queued for a subscriber whose connection closed, after
// PUBLISH counted it). Each entry lists the nodes it was published to;
// the envelope carries the entry's id, so a node knows where it is.

//go:embed lua/history.lua
var luaHistory string

//go:embed lua/history_read.lua
var luaHistoryRead string

var historyReadScript = redis.NewScript(luaHistoryRead)

// History sizes: how many entries a target's history keeps (about; fewer
// for large messages, so that it holds about HistoryBytes), and how long
// it lives after its last message. A node replays at most that much after
// a broken subscription; its subscription comes back within seconds.
const (
	HistoryLength = 1000
	HistoryBytes  = 4 << 20
	HistoryTTL    = time.Minute
)

// historyLen is the length a history is trimmed to when it takes a frame
// of n bytes: HistoryLength, or fewer (at least 16) for large frames.
func historyLen(n int) int {
	return max(16, min(HistoryLength, HistoryBytes/max(n, 1)))
}

// HistoryEntry is one envelope read back from a history.
type HistoryEntry struct {
	ID     string // the entry's id, as the envelope carried it
	Header string // the envelope's wire form up to its seq field
	Frame  string
}

// HistoryPage is one read of a history.
type HistoryPage struct {
	// Last is the last entry id scanned ("" when none): read again after
	// it for more. Entries published to other nodes are scanned too.
	Last    string
	Entries []HistoryEntry // the entries published to the node, in order
	More    bool           // the read stopped at its limit
}

// historyKey is t's history stream, in the slot of t's route hash.
func (s *RedisStore) historyKey(t Target) string {
	if t.User != "" {
		return s.prefix + "uhist:" + t.Action + "|" + s.tag(t.User)
	}
	return s.prefix + "ahist:" + s.tag(t.Action)
}

// ReadHistory reads up to limit entries of t's history after the entry id
// after, keeping those published to node. With after "", it reads what
// was published in the last HistoryTTL.
func (s *RedisStore) ReadHistory(ctx context.Context, t Target, node, after string, limit int) (HistoryPage, error) {
	cmd := historyReadScript.Run(ctx, s.c, []string{s.historyKey(t)}, after, node, HistoryTTL.Milliseconds(), limit)
	return ParseHistory(cmd, limit)
}

// QueueReadHistory queues ReadHistory's script on pipe (EVAL: a pipeline
// cannot fall back from an unknown digest). Read it with ParseHistory.
func (s *RedisStore) QueueReadHistory(ctx context.Context, pipe redis.Pipeliner, t Target, node, after string, limit int) *redis.Cmd {
	return historyReadScript.Eval(ctx, pipe, []string{s.historyKey(t)}, after, node, HistoryTTL.Milliseconds(), limit)
}

// ParseHistory reads the answer of a history read of up to limit entries.
func ParseHistory(cmd *redis.Cmd, limit int) (HistoryPage, error) {
	v, err := cmd.StringSlice()
	if err != nil {
		return HistoryPage{}, err
	}
	if len(v) < 2 || (len(v)-2)%3 != 0 {
		return HistoryPage{}, fmt.Errorf("session: unexpected history reply of %d strings", len(v))
	}
	scanned, err := strconv.Atoi(v[1])
	if err != nil {
		return HistoryPage{}, fmt.Errorf("session: unexpected history reply: %w", err)
	}
	p := HistoryPage{Last: v[0], Entries: make([]HistoryEntry, 0, (len(v)-2)/3), More: scanned >= limit}
	for i := 2; i < len(v); i += 3 {
		p.Entries = append(p.Entries, HistoryEntry{ID: v[i], Header: v[i+1], Frame: v[i+2]})
	}
	return p, nil
}
