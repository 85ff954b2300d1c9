package session

import (
	"context"
	"sync"
	"sync/atomic"
)

var _ Mailbox = (*MemoryMailbox)(nil)

// mailOverhead is what MemoryMailbox counts per kept message against its
// Limit besides the frame: the entry in its mailbox and in the global
// age queue.
const mailOverhead = 64

// MemoryMailbox is a Mailbox in process memory, for a single node. Besides
// each mailbox's size and age limits, the total it keeps is capped (Limit,
// MAILBOX_MEMORY_LIMIT): past it, the oldest messages of all mailboxes go
// first, counted by Dropped. Each mailbox that ever received a message keeps
// a record of about 100 bytes (its numbers and read cursor) until the
// process ends, so that numbers never restart. It is safe for concurrent use.
type MemoryMailbox struct {
	opts  MailboxOptions
	limit int64

	mu      sync.Mutex
	boxes   map[boxKey]*memBox
	aged    []agedMail // every kept message, oldest first (stale entries skipped)
	live    int        // entries of aged still kept
	bytes   int64      // kept frames plus mailOverhead each
	dedup   map[string]dedupEntry
	dedupQ  []dedupItem // dedup keys in the order they expire
	dropped atomic.Uint64
}

type boxKey struct{ user, action string }

// memBox is one mailbox. Its kept messages are numbered consecutively:
// retention only ever drops the oldest.
type memBox struct {
	key   boxKey
	seq   int64 // last number given
	read  int64 // read cursor
	mails []memMail
}

type memMail struct {
	seq   int64
	at    int64 // Unix ms when kept
	frame []byte
}

// agedMail is one kept message in the global age queue.
type agedMail struct {
	box *memBox
	seq int64
}

type dedupEntry struct {
	seq     int64
	expires int64 // Unix ms
}

type dedupItem struct {
	key     string
	expires int64
}

// NewMemoryMailbox returns an empty MemoryMailbox keeping at most limit
// bytes in total (each message counts its frame plus 64 bytes; 0 means
// DefaultMailboxLimit, 256 MiB).
func NewMemoryMailbox(opts MailboxOptions, limit int64) *MemoryMailbox {
	opts.setDefaults()
	if limit <= 0 {
		limit = DefaultMailboxLimit
	}
	return &MemoryMailbox{
		opts:  opts,
		limit: limit,
		boxes: make(map[boxKey]*memBox),
		dedup: make(map[string]dedupEntry),
	}
}

// Append implements Mailbox.
func (m *MemoryMailbox) Append(_ context.Context, user, action, sender, id string, head []byte) (int64, []byte, bool, error) {
	now := m.opts.Now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	var dk string
	if id != "" {
		dk = dedupKey(user, action, sender, id)
		if d, ok := m.dedup[dk]; ok && d.expires > now {
			return d.seq, nil, true, nil
		}
	}
	key := boxKey{user, action}
	b := m.boxes[key]
	if b == nil {
		b = &memBox{key: key}
		m.boxes[key] = b
	}
	b.seq++
	frame := mailFrame(head, b.seq)
	b.mails = append(b.mails, memMail{seq: b.seq, at: now, frame: frame})
	m.aged = append(m.aged, agedMail{b, b.seq})
	m.live++
	m.bytes += int64(len(frame)) + mailOverhead
	if dk != "" {
		exp := now + m.opts.DedupWindow.Milliseconds()
		m.dedup[dk] = dedupEntry{b.seq, exp}
		m.dedupQ = append(m.dedupQ, dedupItem{dk, exp})
	}
	for len(b.mails) > m.opts.Size {
		m.dropFirst(b)
	}
	for m.bytes > m.limit && m.dropOldest() {
	}
	m.compactLocked()
	return b.seq, frame, false, nil
}

// dedupKey joins the parts of a dedup key; the lengths keep it unambiguous.
func dedupKey(user, action, sender, id string) string {
	b := make([]byte, 0, len(user)+len(action)+len(sender)+len(id)+24)
	for _, s := range [...]string{user, action, sender} {
		b = appendInt(b, int64(len(s)))
		b = append(b, ':')
		b = append(b, s...)
	}
	return string(append(b, id...))
}

// dropFirst removes b's oldest kept message for retention.
func (m *MemoryMailbox) dropFirst(b *memBox) {
	m.bytes -= int64(len(b.mails[0].frame)) + mailOverhead
	b.mails[0] = memMail{}
	b.mails = b.mails[1:]
	if len(b.mails) == 0 {
		b.mails = nil
	}
	m.live--
	m.dropped.Add(1)
}

// kept reports whether the aged entry a is still kept in its mailbox.
func kept(a agedMail) bool {
	b := a.box
	return len(b.mails) > 0 && a.seq >= b.mails[0].seq
}

// dropOldest drops the oldest kept message of all mailboxes. It reports
// false when nothing is kept.
func (m *MemoryMailbox) dropOldest() bool {
	for len(m.aged) > 0 {
		a := m.aged[0]
		m.aged[0] = agedMail{}
		m.aged = m.aged[1:]
		if kept(a) {
			m.dropFirst(a.box)
			return true
		}
	}
	return false
}

// expireLocked drops the messages and dedup keys whose time has passed.
// Messages are kept in time order, so the expired ones lead the age queue.
func (m *MemoryMailbox) expireLocked(now int64) {
	cutoff := now - m.opts.TTL.Milliseconds()
	for len(m.aged) > 0 {
		a := m.aged[0]
		if kept(a) {
			if a.box.mails[0].at > cutoff {
				break
			}
			m.dropFirst(a.box)
		}
		m.aged[0] = agedMail{}
		m.aged = m.aged[1:]
	}
	for len(m.dedupQ) > 0 && m.dedupQ[0].expires <= now {
		k := m.dedupQ[0].key
		if d, ok := m.dedup[k]; ok && d.expires <= now {
			delete(m.dedup, k)
		}
		m.dedupQ[0] = dedupItem{}
		m.dedupQ = m.dedupQ[1:]
	}
}

// compactLocked rebuilds the age queue once most of it is stale (messages
// dropped by their mailbox's size, or erased), so that it stays within
// twice the kept messages.
func (m *MemoryMailbox) compactLocked() {
	if len(m.aged) < 1024 || len(m.aged) < 2*m.live {
		return
	}
	out := make([]agedMail, 0, m.live+m.live/4)
	for _, a := range m.aged {
		if kept(a) {
			out = append(out, a)
		}
	}
	m.aged = out
	m.live = len(out)
}

// Read implements Mailbox.
func (m *MemoryMailbox) Read(_ context.Context, user, action string, since int64, limit int) (Page, error) {
	if since < 0 || limit < 0 {
		return Page{}, ErrInvalidSeq
	}
	now := m.opts.Now().UnixMilli()
	cutoff := now - m.opts.TTL.Milliseconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxes[boxKey{user, action}]
	if b == nil {
		_, gap := startAfter(since, 0, 0)
		return Page{Gap: gap}, nil
	}
	mails := b.mails
	for len(mails) > 0 && mails[0].at <= cutoff {
		mails = mails[1:] // expired; dropped by the next Append
	}
	var first int64
	if len(mails) > 0 {
		first = mails[0].seq
	}
	from, gap := startAfter(since, first, b.seq)
	p := Page{Latest: b.seq, Read: b.read, First: first, Gap: gap}
	if len(mails) > 0 && from >= first {
		mails = mails[from-first+1:]
	}
	if len(mails) > limit {
		mails = mails[:limit]
	}
	if len(mails) > 0 {
		p.Mails = make([]Mail, len(mails))
		for i, mm := range mails {
			p.Mails[i] = Mail{Seq: mm.seq, Frame: mm.frame}
		}
	}
	return p, nil
}

// Latest implements Mailbox.
func (m *MemoryMailbox) Latest(_ context.Context, user, action string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.boxes[boxKey{user, action}]; b != nil {
		return b.seq, nil
	}
	return 0, nil
}

// Cursor implements Mailbox.
func (m *MemoryMailbox) Cursor(_ context.Context, user, action string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.boxes[boxKey{user, action}]; b != nil {
		return b.read, nil
	}
	return 0, nil
}

// MoveCursor implements Mailbox.
func (m *MemoryMailbox) MoveCursor(_ context.Context, user, action string, seq int64) (int64, error) {
	if seq < 0 {
		return 0, ErrInvalidSeq
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.boxes[boxKey{user, action}]
	if b == nil {
		return 0, nil
	}
	seq = min(seq, b.seq)
	if seq > b.read {
		b.read = seq
	}
	return b.read, nil
}

// Erase implements Mailbox.
func (m *MemoryMailbox) Erase(_ context.Context, user, action string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	erase := func(b *memBox) {
		for _, mm := range b.mails {
			m.bytes -= int64(len(mm.frame)) + mailOverhead
		}
		n += len(b.mails)
		m.live -= len(b.mails)
		b.mails = nil
	}
	if action != "" {
		if b := m.boxes[boxKey{user, action}]; b != nil {
			erase(b)
		}
		return n, nil
	}
	for k, b := range m.boxes {
		if k.user == user {
			erase(b)
		}
	}
	return n, nil
}

// Dropped implements Mailbox.
func (m *MemoryMailbox) Dropped() uint64 { return m.dropped.Load() }

// Kept returns how many messages and bytes (frames plus 64 bytes each) the
// mailbox keeps in total.
func (m *MemoryMailbox) Kept() (messages int, bytes int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live, m.bytes
}

// Sweep drops expired messages and dedup keys now rather than at the next
// Append.
func (m *MemoryMailbox) Sweep() {
	now := m.opts.Now().UnixMilli()
	m.mu.Lock()
	m.expireLocked(now)
	m.compactLocked()
	m.mu.Unlock()
}
