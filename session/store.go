// Package session holds Switchboard's bindings: which connection belongs to
// which user id and action, on which node. A Store is the shared source of
// truth that every node reads and writes; the in-memory implementation serves
// a single node, the Redis one many.
package session

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned by every Store.
var (
	// ErrNotFound: no binding for that connection id.
	ErrNotFound = errors.New("session: not found")
	// ErrUnavailable: the store cannot be reached; the operation may not have happened.
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrTooManyConnections: Bind refused, the user has as many connections
	// as the store allows.
	ErrTooManyConnections = errors.New("session: too many connections")
	// ErrBanned: Bind refused, the user is banned.
	ErrBanned = errors.New("session: user banned")
	// ErrTooManyBlocks: Block refused, the user blocks MaxBlocks users.
	ErrTooManyBlocks = errors.New("session: too many blocked users")
)

// Binding ties one WebSocket connection to a user id and an action.
type Binding struct {
	ConnID      string // unique connection id, assigned by the node
	UserID      string
	Action      string
	Node        string    // id of the node holding the connection
	ConnectedAt time.Time // stored with millisecond precision
}

// Removed is a binding that was deleted, and whether it was the user's last
// connection in its action (a `leave` is then owed).
type Removed struct {
	Binding
	Last bool
}

// Store is the set of bindings shared by all nodes. Implementations are safe
// for concurrent use. Every method that reaches a remote store wraps
// ErrUnavailable when it cannot.
type Store interface {
	// Bind writes b. It reports whether b is the user's first connection in
	// b.Action (a `join` is then owed). Either the whole binding is written or,
	// on error, nothing of it remains. It refuses a banned user with
	// ErrBanned, and a user over the store's connection cap with
	// ErrTooManyConnections.
	Bind(ctx context.Context, b Binding) (first bool, err error)
	// Unbind removes the binding of connID. ErrNotFound if there is none.
	Unbind(ctx context.Context, connID string) (Removed, error)
	// Get returns the binding of connID, or ErrNotFound.
	Get(ctx context.Context, connID string) (Binding, error)
	// UserBindings returns every binding of userID, in all actions.
	UserBindings(ctx context.Context, userID string) ([]Binding, error)
	// ActionConns returns connection id → user id for every connection in action.
	ActionConns(ctx context.Context, action string) (map[string]string, error)
	// ActionUsers returns the distinct user ids in action, sorted.
	ActionUsers(ctx context.Context, action string) ([]string, error)
	// CountUsers counts the distinct users in action.
	CountUsers(ctx context.Context, action string) (int, error)
	// CountUser counts the connections of userID in action.
	CountUser(ctx context.Context, action, userID string) (int, error)
	// CountAction counts the connections in action.
	CountAction(ctx context.Context, action string) (int, error)

	// Heartbeat marks node alive for ttl. It reports whether node's previous
	// heartbeat was still there: false on a node's first heartbeat, and
	// when the store lost it (restarted empty, flushed, or it expired),
	// in which case the node's bindings may be gone too and it must
	// Restore them.
	Heartbeat(ctx context.Context, node string, ttl time.Duration) (alive bool, err error)
	// Reap removes the bindings of every node whose heartbeat has expired and
	// returns what it removed. When several nodes reap at once, each removed
	// binding is returned to exactly one of them.
	Reap(ctx context.Context) ([]Removed, error)
	// Restore writes bindings back (after the store lost them), without
	// reporting joins. Bindings already present are left as they are.
	Restore(ctx context.Context, bs []Binding) error
	// RemoveNode deletes node's heartbeat and all its bindings, returning them.
	RemoveNode(ctx context.Context, node string) ([]Removed, error)
	// Bans and blocks (docs/operations.md, "Protecting a public deployment").
	Moderation

	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}
