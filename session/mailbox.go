package session

import (
	"context"
	"errors"
	"time"
)

// Defaults of a mailbox's retention (docs/protocol.md, "The mailbox").
const (
	DefaultMailboxSize  = 1000
	DefaultMailboxTTL   = 168 * time.Hour
	DefaultDedupWindow  = 5 * time.Minute
	DefaultMailboxLimit = 256 << 20 // MemoryMailbox's total, in bytes
)

// ErrInvalidSeq: a sequence number or a limit below zero.
var ErrInvalidSeq = errors.New("session: invalid mailbox sequence number")

// Mail is one message kept in a mailbox: its number and the frame exactly
// as it was first delivered (it ends with `,"seq":Seq}`).
type Mail struct {
	Seq   int64
	Frame []byte
}

// Page is what Read returns.
type Page struct {
	// Mails are the kept messages after the asked number, oldest first.
	Mails []Mail
	// Latest is the last number the mailbox has given, 0 if none.
	Latest int64
	// Read is the user's read cursor for the action (0 if never moved).
	Read int64
	// First is the oldest kept number, 0 if none is kept.
	First int64
	// Gap is true when messages after the asked number are no longer kept
	// (trimmed, expired or erased), or when the asked number is beyond
	// Latest (the numbering was forgotten, see Mailbox); Mails then starts
	// at the oldest kept message.
	Gap bool
}

// Mailbox keeps the direct messages of each user and action
// (docs/protocol.md, "The mailbox"), numbered 1, 2, 3, … per mailbox. Numbers never restart while the
// mailbox's record lives (not after expiry, not after Erase); a caller
// whose `since` is beyond Latest sees Gap and gets the mailbox from its
// start. Implementations are safe for concurrent use; the ones that reach
// a remote store wrap ErrUnavailable when they cannot.
type Mailbox interface {
	// Append keeps one message for user in action, sent by sender (a user
	// id, "" for the server). head is the frame to deliver without its
	// final '}' and followed by `,"seq":`; the kept frame is head, the
	// number in decimal and '}'. id is the client's message id in a
	// canonical form ("" = none): a message whose (sender, id) was already
	// appended to this mailbox within the dedup window is not kept again,
	// and Append returns the first one's number with dup true and a nil
	// frame.
	Append(ctx context.Context, user, action, sender, id string, head []byte) (seq int64, frame []byte, dup bool, err error)
	// Read returns at most limit kept messages with numbers above since,
	// oldest first (limit 0: none, only Latest, Read and Gap).
	Read(ctx context.Context, user, action string, since int64, limit int) (Page, error)
	// Latest returns the last number given in the mailbox, 0 if none.
	Latest(ctx context.Context, user, action string) (int64, error)
	// Cursor returns the user's read cursor for action.
	Cursor(ctx context.Context, user, action string) (int64, error)
	// MoveCursor moves the read cursor forward to seq (never back; at most
	// to Latest) and returns the cursor after the move.
	MoveCursor(ctx context.Context, user, action string, seq int64) (int64, error)
	// Erase deletes the kept messages of user in action, or in every
	// action when action is "", and returns how many it deleted. Numbers
	// and read cursors stay.
	Erase(ctx context.Context, user, action string) (int, error)
	// Dropped counts the messages this Mailbox value removed for
	// retention (size, age or, in memory, the total limit).
	Dropped() uint64
}

// MailboxOptions is the retention of a mailbox. The zero value of each
// field means its default.
type MailboxOptions struct {
	// Size is how many messages a mailbox keeps (MAILBOX_SIZE); older ones
	// are dropped. Default 1000.
	Size int
	// TTL is how long a message is kept (MAILBOX_TTL). Default 168h.
	TTL time.Duration
	// DedupWindow is how long a (sender, id) is remembered (DEDUP_WINDOW).
	// Default 5m.
	DedupWindow time.Duration
	// Now returns the current time. Default time.Now (tests set it).
	Now func() time.Time
}

func (o *MailboxOptions) setDefaults() {
	if o.Size <= 0 {
		o.Size = DefaultMailboxSize
	}
	if o.TTL <= 0 {
		o.TTL = DefaultMailboxTTL
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = DefaultDedupWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// After returns where a reader that asks for the messages after since
// starts (since, or 0 when since is beyond Latest: the numbering was
// forgotten), and whether messages after since are no longer kept.
func (p Page) After(since int64) (from int64, gap bool) {
	return startAfter(since, p.First, p.Latest)
}

// mailFrame returns head + seq + "}" in one allocation of its exact size.
func mailFrame(head []byte, seq int64) []byte {
	var digits [20]byte
	d := appendInt(digits[:0], seq)
	out := make([]byte, 0, len(head)+len(d)+1)
	out = append(out, head...)
	out = append(out, d...)
	return append(out, '}')
}

func appendInt(b []byte, n int64) []byte {
	if n == 0 {
		return append(b, '0')
	}
	var tmp [20]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[i:]...)
}

// startAfter returns the number after which a reader that asked for since
// starts, and whether that is a gap: messages above since are no longer
// kept (first is the oldest kept number, 0 if none is kept), or since is
// beyond latest (the numbering restarted: start from the beginning).
func startAfter(since, first, latest int64) (from int64, gap bool) {
	if since > latest {
		return 0, true
	}
	if first == 0 {
		return since, since < latest
	}
	return since, since < first-1
}
