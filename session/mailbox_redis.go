package session

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Mailbox = (*RedisMailbox)(nil)

// MailboxKeep is how long a mailbox's numbers and read cursor (its meta
// hash and the user's index of mailboxes) outlive its last message: they
// are refreshed on every append to MAILBOX_TTL plus this. A mailbox idle
// for longer starts again from 1; a client then asking with a larger
// `since` sees a gap and gets the mailbox from its start.
const MailboxKeep = 365 * 24 * time.Hour

//go:embed mailbox_append.lua
var mailboxAppendFunc string

//go:embed mailbox_append_main.lua
var mailboxAppendMain string

//go:embed mailbox_read.lua
var mailboxReadSrc string

//go:embed mailbox_cursor.lua
var mailboxCursorSrc string

//go:embed mailbox_erase.lua
var mailboxEraseSrc string

// MailboxAppendLua is the Lua source of the function
// `mailbox_append(stream, meta, dedup, index, action, head, now_ms, size,
// ttl_ms, dedup_ms, keep_ms)`, a definition only, for a script that routes a
// direct message and keeps it in the same round trip: concatenate it
// before the script's own code, and pass the keys of
// RedisMailbox.AppendKeys and the arguments of RedisMailbox.AppendArgs.
func MailboxAppendLua() string { return mailboxAppendFunc }

var (
	mailboxAppendScript = redis.NewScript(mailboxAppendFunc + "\n" + mailboxAppendMain)
	mailboxReadScript   = redis.NewScript(mailboxReadSrc)
	mailboxCursorScript = redis.NewScript(mailboxCursorSrc)
	mailboxEraseScript  = redis.NewScript(mailboxEraseSrc)
)

// RedisMailbox is a Mailbox in Redis, shared by every node. It is safe for
// concurrent use and holds no state besides the client and a counter.
//
// Keys, with the default prefix "sb:" and {user} the user id in braces
// (a hash tag, so that all of one user's keys are in one slot of a Redis
// Cluster; the braces are there on a single Redis too, where they keep
// user "a:b" in action "c" apart from user "a" in action "b:c"):
//
//	sb:mbox:{user}:action       stream: entries "<seq>-0" with fields f (the frame
//	                            as delivered) and t (Unix ms); at most MAILBOX_SIZE
//	                            entries (exact), none older than MAILBOX_TTL (older
//	                            ones are skipped by reads and removed on every 32nd
//	                            append); the key expires MAILBOX_TTL after the last
//	                            append
//	sb:mboxmeta:{user}:action   hash: seq (last number given), read (read cursor);
//	                            expires MAILBOX_TTL + 365 days after the last append
//	                            (renewed by the first append of a day, to within a day)
//	sb:mboxes:{user}            set of the user's actions with a mailbox (same lifetime)
//	sb:dedup:{user}:<len(action)>:action:<len(sender)>:sender:id
//	                            string: the number kept for a client's id; expires
//	                            after DEDUP_WINDOW
//
// Append is one script (one round trip); so are Read and MoveCursor.
// Erase of all of a user's mailboxes reads the index first. The client is
// not owned: Close it yourself.
type RedisMailbox struct {
	c       redis.UniversalClient
	prefix  string
	opts    MailboxOptions
	timeout time.Duration
	dropped atomic.Uint64
}

// NewRedisMailbox returns a RedisMailbox on c with prefix (default "sb:")
// and the retention of opts. It does no I/O.
func NewRedisMailbox(c redis.UniversalClient, prefix string, opts MailboxOptions) *RedisMailbox {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	opts.setDefaults()
	return &RedisMailbox{c: c, prefix: prefix, opts: opts, timeout: DefaultRedisTimeout}
}

func tag(user string) string { return "{" + user + "}" }

func (m *RedisMailbox) streamKey(user, action string) string {
	return m.prefix + "mbox:" + tag(user) + ":" + action
}

func (m *RedisMailbox) metaKey(user, action string) string {
	return m.prefix + "mboxmeta:" + tag(user) + ":" + action
}

func (m *RedisMailbox) indexKey(user string) string { return m.prefix + "mboxes:" + tag(user) }

func (m *RedisMailbox) dedupKey(user, action, sender, id string) string {
	if id == "" {
		// Never written (dedup_ms is 0), but declared: every key a script
		// touches is passed, in the recipient's slot.
		return m.prefix + "dedup:" + tag(user)
	}
	return m.prefix + "dedup:" + tag(user) + ":" + strconv.Itoa(len(action)) + ":" + action + ":" +
		strconv.Itoa(len(sender)) + ":" + sender + ":" + id
}

// AppendKeys returns the keys of mailbox_append for one message, in order:
// stream, meta, dedup, index. All are in the hash slot of user.
func (m *RedisMailbox) AppendKeys(user, action, sender, id string) []string {
	return []string{m.streamKey(user, action), m.metaKey(user, action), m.dedupKey(user, action, sender, id), m.indexKey(user)}
}

// AppendArgs returns the arguments of mailbox_append after its keys, in
// order: action, head, now_ms, size, ttl_ms, dedup_ms (0 without an id),
// keep_ms.
func (m *RedisMailbox) AppendArgs(action, id string, head []byte, now time.Time) []any {
	dedup := int64(0)
	if id != "" {
		dedup = m.opts.DedupWindow.Milliseconds()
	}
	ttl := m.opts.TTL.Milliseconds()
	return []any{action, head, now.UnixMilli(), m.opts.Size, ttl, dedup, ttl + MailboxKeep.Milliseconds()}
}

// ParseAppend reads the reply of mailbox_append as returned by
// mailbox_append_main.lua ({seq, frame or false, dup, trimmed}) and counts
// what retention removed.
func (m *RedisMailbox) ParseAppend(v any) (seq int64, frame []byte, dup bool, err error) {
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return 0, nil, false, fmt.Errorf("session: mailbox append: unexpected reply %T", v)
	}
	seq, _ = a[0].(int64)
	if s, ok := a[1].(string); ok {
		frame = []byte(s)
	}
	d, _ := a[2].(int64)
	trimmed, _ := a[3].(int64)
	m.dropped.Add(uint64(trimmed))
	return seq, frame, d == 1, nil
}

// rt runs one round trip under the timeout.
func (m *RedisMailbox) rt(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	err := fn(ctx)
	if err == nil || err == redis.Nil {
		return nil
	}
	if ctx.Err() != nil || unavailable(err) {
		return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("session: redis %s: %w", op, err)
}

// Append implements Mailbox.
func (m *RedisMailbox) Append(ctx context.Context, user, action, sender, id string, head []byte) (seq int64, frame []byte, dup bool, err error) {
	var v any
	err = m.rt(ctx, "mailbox append", func(ctx context.Context) (err error) {
		v, err = mailboxAppendScript.Run(ctx, m.c, m.AppendKeys(user, action, sender, id),
			m.AppendArgs(action, id, head, m.opts.Now())...).Result()
		return err
	})
	if err != nil {
		return 0, nil, false, err
	}
	return m.ParseAppend(v)
}

// Read implements Mailbox.
func (m *RedisMailbox) Read(ctx context.Context, user, action string, since int64, limit int) (Page, error) {
	if since < 0 || limit < 0 {
		return Page{}, ErrInvalidSeq
	}
	var v []any
	err := m.rt(ctx, "mailbox read", func(ctx context.Context) (err error) {
		v, err = mailboxReadScript.Run(ctx, m.c, []string{m.streamKey(user, action), m.metaKey(user, action)},
			since, limit, m.opts.Now().UnixMilli(), m.opts.TTL.Milliseconds()).Slice()
		return err
	})
	if err != nil {
		return Page{}, err
	}
	if len(v) < 4 || len(v)%2 == 1 {
		return Page{}, fmt.Errorf("session: mailbox read: unexpected reply of %d values", len(v))
	}
	p := Page{}
	p.Latest, _ = v[0].(int64)
	p.Read, _ = v[1].(int64)
	gap, _ := v[2].(int64)
	p.Gap = gap == 1
	p.First, _ = v[3].(int64)
	if n := (len(v) - 4) / 2; n > 0 {
		p.Mails = make([]Mail, 0, n)
		for i := 4; i+1 < len(v); i += 2 {
			seq, _ := v[i].(int64)
			f, _ := v[i+1].(string)
			p.Mails = append(p.Mails, Mail{Seq: seq, Frame: []byte(f)})
		}
	}
	return p, nil
}

// Latest implements Mailbox.
func (m *RedisMailbox) Latest(ctx context.Context, user, action string) (int64, error) {
	return m.metaField(ctx, user, action, "seq")
}

// Cursor implements Mailbox.
func (m *RedisMailbox) Cursor(ctx context.Context, user, action string) (int64, error) {
	return m.metaField(ctx, user, action, "read")
}

func (m *RedisMailbox) metaField(ctx context.Context, user, action, field string) (int64, error) {
	var n int64
	err := m.rt(ctx, "mailbox meta", func(ctx context.Context) (err error) {
		n, err = m.c.HGet(ctx, m.metaKey(user, action), field).Int64()
		return err
	})
	return n, err
}

// MoveCursor implements Mailbox.
func (m *RedisMailbox) MoveCursor(ctx context.Context, user, action string, seq int64) (int64, error) {
	if seq < 0 {
		return 0, ErrInvalidSeq
	}
	var n int64
	err := m.rt(ctx, "mailbox cursor", func(ctx context.Context) (err error) {
		n, err = mailboxCursorScript.Run(ctx, m.c, []string{m.metaKey(user, action)}, seq).Int64()
		return err
	})
	return n, err
}

// Erase implements Mailbox.
func (m *RedisMailbox) Erase(ctx context.Context, user, action string) (int, error) {
	actions := []string{action}
	if action == "" {
		err := m.rt(ctx, "mailbox index", func(ctx context.Context) (err error) {
			actions, err = m.c.SMembers(ctx, m.indexKey(user)).Result()
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	if len(actions) == 0 {
		return 0, nil
	}
	cmds := make([]*redis.Cmd, len(actions))
	err := m.rt(ctx, "mailbox erase", func(ctx context.Context) error {
		_, err := m.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, a := range actions {
				cmds[i] = mailboxEraseScript.Eval(ctx, p, []string{m.streamKey(user, a), m.indexKey(user)}, a)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		k, _ := c.Int64()
		n += int(k)
	}
	return n, nil
}

// Dropped implements Mailbox: the messages retention removed in this
// value's appends.
func (m *RedisMailbox) Dropped() uint64 { return m.dropped.Load() }
