package session

import (
	"context"
	"time"
)

// Ban is a user's ban (docs/operations.md, "Protecting a public deployment"): while it lasts, the user cannot
// go online.
type Ban struct {
	Until  time.Time // when it ends
	Reason string
}

// Moderation is the part of a Store that keeps bans and blocks. Both the
// memory and the Redis store implement it; with Redis a ban or block
// survives node restarts and applies on every node at once.
type Moderation interface {
	// SetBan bans user until ban.Until, replacing an earlier ban.
	SetBan(ctx context.Context, user string, ban Ban) error
	// GetBan returns user's ban, or ok false when there is none (or it
	// expired).
	GetBan(ctx context.Context, user string) (ban Ban, ok bool, err error)
	// DeleteBan lifts user's ban; it reports whether there was one.
	DeleteBan(ctx context.Context, user string) (bool, error)

	// Block records that user blocks other: other's direct messages to
	// user are dropped (in every action). It reports whether other was not
	// blocked yet.
	Block(ctx context.Context, user, other string) (bool, error)
	// Unblock removes the block; it reports whether there was one.
	Unblock(ctx context.Context, user, other string) (bool, error)
	// Blocks returns the users user blocks, sorted (never nil).
	Blocks(ctx context.Context, user string) ([]string, error)
	// Blocked reports whether user blocks other.
	Blocked(ctx context.Context, user, other string) (bool, error)
}

// MaxBlocks is how many users one user may block; one more is refused
// with ErrTooManyBlocks.
const MaxBlocks = 10000
