package session

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

func TestMemoryMailbox(t *testing.T) {
	t.Parallel()
	testMailbox(t, func(t *testing.T, opts MailboxOptions) Mailbox { return NewMemoryMailbox(opts, 0) })
}

// testMailbox is the contract every Mailbox meets. newMailbox returns an
// empty mailbox store private to the (sub)test, with the given retention.
func testMailbox(t *testing.T, newMailbox func(t *testing.T, opts MailboxOptions) Mailbox) {
	t.Run("Numbering", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{}), t.Context()
		for i := 1; i <= 5; i++ {
			seq, frame, dup, err := m.Append(ctx, "bob", "chat", "alice", "", head(i))
			if err != nil {
				t.Fatal(err)
			}
			if seq != int64(i) || dup || string(frame) != want(i, seq) {
				t.Fatalf("Append #%d = %d %q %v, want %d %q false", i, seq, frame, dup, i, want(i, int64(i)))
			}
		}
		p := read(t, m, "bob", "chat", 0, 100)
		if p.Latest != 5 || p.Gap || p.Read != 0 {
			t.Errorf("Read(0) = latest %d gap %v read %d, want 5 false 0", p.Latest, p.Gap, p.Read)
		}
		assertSeqs(t, p, 1, 2, 3, 4, 5)
		for _, ml := range p.Mails {
			if string(ml.Frame) != want(int(ml.Seq), ml.Seq) {
				t.Errorf("frame %d = %q, want %q", ml.Seq, ml.Frame, want(int(ml.Seq), ml.Seq))
			}
		}
		assertSeqs(t, read(t, m, "bob", "chat", 2, 2), 3, 4)
		assertSeqs(t, read(t, m, "bob", "chat", 5, 10))
		if p := read(t, m, "bob", "chat", 1, 0); len(p.Mails) != 0 || p.Latest != 5 {
			t.Errorf("Read(limit 0) = %d mails latest %d, want 0 and 5", len(p.Mails), p.Latest)
		}
		if n, err := m.Latest(ctx, "bob", "chat"); err != nil || n != 5 {
			t.Errorf("Latest = %d, %v; want 5", n, err)
		}
		// Other mailboxes are numbered on their own, names that would
		// collide when joined with ':' included.
		for _, k := range [][2]string{{"bob", "lobby"}, {"alice", "chat"}, {"a:b", "c"}, {"a", "b:c"}} {
			if seq, _, _, err := m.Append(ctx, k[0], k[1], "x", "", head(1)); err != nil || seq != 1 {
				t.Errorf("Append(%s, %s) = %d, %v; want 1", k[0], k[1], seq, err)
			}
		}
		if p := read(t, m, "nobody", "chat", 0, 10); p.Latest != 0 || p.Gap || len(p.Mails) != 0 {
			t.Errorf("Read(unknown) = %+v, want empty", p)
		}
	})

	t.Run("FramesAsStored", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{}), t.Context()
		h := []byte(`{"from":"al\"ice","action":"chat","ts":1795582859711,"text":"h\u00e9llo \ud83d\ude00 ✓","to":"bob","type":"message","seq":`)
		_, frame, _, err := m.Append(ctx, "bob", "chat", "al\"ice", `"m-1"`, h)
		if err != nil {
			t.Fatal(err)
		}
		wantFrame := string(h) + "1}"
		if string(frame) != wantFrame {
			t.Errorf("frame = %q, want %q", frame, wantFrame)
		}
		p := read(t, m, "bob", "chat", 0, 10)
		if len(p.Mails) != 1 || string(p.Mails[0].Frame) != wantFrame {
			t.Errorf("Read = %+v, want the frame %q", p.Mails, wantFrame)
		}
	})

	t.Run("Trimming", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{Size: 3}), t.Context()
		for i := 1; i <= 5; i++ {
			appendN(t, m, "bob", "chat", i)
		}
		p := read(t, m, "bob", "chat", 0, 100)
		assertSeqs(t, p, 3, 4, 5)
		if !p.Gap || p.Latest != 5 {
			t.Errorf("Read(0) after trimming: gap %v latest %d, want true 5", p.Gap, p.Latest)
		}
		if p := read(t, m, "bob", "chat", 1, 100); !p.Gap {
			t.Error("Read(1): gap false, want true (2 was trimmed)")
		}
		if p := read(t, m, "bob", "chat", 2, 100); p.Gap || p.First != 3 {
			t.Errorf("Read(2): gap %v first %d, want false 3", p.Gap, p.First)
		}
		for since, want := range map[int64]bool{0: true, 1: true, 2: false, 5: false} {
			if _, gap := p.After(since); gap != want {
				t.Errorf("After(%d): gap %v, want %v", since, gap, want)
			}
		}
		if d := m.Dropped(); d != 2 {
			t.Errorf("Dropped = %d, want 2", d)
		}
		_ = ctx
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{TTL: 300 * time.Millisecond}), t.Context()
		appendN(t, m, "bob", "chat", 1)
		appendN(t, m, "bob", "chat", 2)
		if p := read(t, m, "bob", "chat", 0, 10); len(p.Mails) != 2 {
			t.Fatalf("Read before expiry: %d mails, want 2", len(p.Mails))
		}
		waitFor(t, "messages to expire", func() bool {
			return len(read(t, m, "bob", "chat", 0, 10).Mails) == 0
		})
		p := read(t, m, "bob", "chat", 0, 10)
		if !p.Gap || p.Latest != 2 {
			t.Errorf("Read after expiry: gap %v latest %d, want true 2", p.Gap, p.Latest)
		}
		seq, _, _, err := m.Append(ctx, "bob", "chat", "alice", "", head(3))
		if err != nil || seq != 3 {
			t.Errorf("Append after expiry = %d, %v; want 3 (numbers never restart)", seq, err)
		}
		p = read(t, m, "bob", "chat", 2, 10)
		assertSeqs(t, p, 3)
		if p.Gap {
			t.Error("Read(2) after expiry and a new message: gap true, want false")
		}
	})

	t.Run("Cursor", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{}), t.Context()
		if c, err := m.Cursor(ctx, "bob", "chat"); err != nil || c != 0 {
			t.Errorf("Cursor(unknown) = %d, %v; want 0", c, err)
		}
		if c, err := m.MoveCursor(ctx, "bob", "chat", 3); err != nil || c != 0 {
			t.Errorf("MoveCursor on an empty mailbox = %d, %v; want 0", c, err)
		}
		for i := 1; i <= 5; i++ {
			appendN(t, m, "bob", "chat", i)
		}
		for _, tc := range []struct{ to, want int64 }{{3, 3}, {2, 3}, {0, 3}, {4, 4}, {100, 5}} {
			if c, err := m.MoveCursor(ctx, "bob", "chat", tc.to); err != nil || c != tc.want {
				t.Errorf("MoveCursor(%d) = %d, %v; want %d", tc.to, c, err, tc.want)
			}
		}
		if _, err := m.MoveCursor(ctx, "bob", "chat", -1); err == nil {
			t.Error("MoveCursor(-1): no error")
		}
		if c, err := m.Cursor(ctx, "bob", "chat"); err != nil || c != 5 {
			t.Errorf("Cursor = %d, %v; want 5", c, err)
		}
		if p := read(t, m, "bob", "chat", 0, 0); p.Read != 5 {
			t.Errorf("Read().Read = %d, want 5", p.Read)
		}
		if c, _ := m.Cursor(ctx, "bob", "lobby"); c != 0 {
			t.Errorf("Cursor(other action) = %d, want 0", c)
		}
	})

	t.Run("Dedup", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{DedupWindow: 500 * time.Millisecond}), t.Context()
		app := func(user, action, sender, id string) (int64, bool) {
			t.Helper()
			seq, frame, dup, err := m.Append(ctx, user, action, sender, id, head(0))
			if err != nil {
				t.Fatal(err)
			}
			if dup != (frame == nil) {
				t.Fatalf("Append: dup %v with frame %q", dup, frame)
			}
			return seq, dup
		}
		if seq, dup := app("bob", "chat", "alice", `"x"`); seq != 1 || dup {
			t.Fatalf("first = %d %v, want 1 false", seq, dup)
		}
		if seq, dup := app("bob", "chat", "alice", `"x"`); seq != 1 || !dup {
			t.Errorf("resend = %d %v, want 1 true", seq, dup)
		}
		if seq, dup := app("bob", "chat", "carol", `"x"`); seq != 2 || dup {
			t.Errorf("other sender, same id = %d %v, want 2 false", seq, dup)
		}
		if seq, dup := app("bob", "chat", "alice", `1`); seq != 3 || dup {
			t.Errorf("other id = %d %v, want 3 false", seq, dup)
		}
		if seq, dup := app("bob", "lobby", "alice", `"x"`); seq != 1 || dup {
			t.Errorf("other action = %d %v, want 1 false", seq, dup)
		}
		if seq, dup := app("dave", "chat", "alice", `"x"`); seq != 1 || dup {
			t.Errorf("other recipient = %d %v, want 1 false", seq, dup)
		}
		for i := 0; i < 2; i++ {
			if _, dup := app("bob", "chat", "alice", ""); dup {
				t.Error("no id: dup true")
			}
		}
		if p := read(t, m, "bob", "chat", 0, 100); len(p.Mails) != 5 {
			t.Errorf("kept %d messages, want 5 (a duplicate is not kept)", len(p.Mails))
		}
		var seq int64
		waitFor(t, "the dedup window to pass", func() bool {
			s, dup := app("bob", "chat", "alice", `"x"`)
			seq = s
			return !dup
		})
		if seq != 6 {
			t.Errorf("after the window: seq %d, want 6", seq)
		}
	})

	t.Run("Erase", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{}), t.Context()
		for i := 1; i <= 3; i++ {
			appendN(t, m, "bob", "chat", i)
			appendN(t, m, "bob", "lobby", i)
			appendN(t, m, "carol", "chat", i)
		}
		if _, err := m.MoveCursor(ctx, "bob", "chat", 2); err != nil {
			t.Fatal(err)
		}
		if n, err := m.Erase(ctx, "bob", "chat"); err != nil || n != 3 {
			t.Errorf("Erase(bob, chat) = %d, %v; want 3", n, err)
		}
		p := read(t, m, "bob", "chat", 0, 10)
		if len(p.Mails) != 0 || !p.Gap || p.Latest != 3 || p.Read != 2 {
			t.Errorf("Read after Erase = %+v, want no mails, gap, latest 3, read 2", p)
		}
		if seq := appendN(t, m, "bob", "chat", 4); seq != 4 {
			t.Errorf("Append after Erase = %d, want 4", seq)
		}
		assertSeqs(t, read(t, m, "bob", "chat", 3, 10), 4)
		if n, err := m.Erase(ctx, "bob", ""); err != nil || n != 4 {
			t.Errorf("Erase(bob, all) = %d, %v; want 4 (1 in chat, 3 in lobby)", n, err)
		}
		if p := read(t, m, "bob", "lobby", 0, 10); len(p.Mails) != 0 || p.Latest != 3 {
			t.Errorf("lobby after Erase(all) = %+v", p)
		}
		assertSeqs(t, read(t, m, "carol", "chat", 0, 10), 1, 2, 3)
		if n, err := m.Erase(ctx, "nobody", ""); err != nil || n != 0 {
			t.Errorf("Erase(unknown) = %d, %v; want 0", n, err)
		}
	})

	t.Run("SinceBeyondLatest", func(t *testing.T) {
		t.Parallel()
		m := newMailbox(t, MailboxOptions{})
		appendN(t, m, "bob", "chat", 1)
		appendN(t, m, "bob", "chat", 2)
		p := read(t, m, "bob", "chat", 57, 10)
		if !p.Gap {
			t.Error("Read(57) with latest 2: gap false, want true")
		}
		assertSeqs(t, p, 1, 2)
		if p := read(t, m, "nobody", "chat", 3, 10); !p.Gap {
			t.Error("Read(3) of an unknown mailbox: gap false, want true")
		}
		if _, err := m.Read(t.Context(), "bob", "chat", -1, 10); err == nil {
			t.Error("Read(-1): no error")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		t.Parallel()
		m, ctx := newMailbox(t, MailboxOptions{}), t.Context()
		const senders, each = 8, 25
		seqs := make(chan int64, senders*each)
		parallel(t, senders, func(i int) error {
			for j := 0; j < each; j++ {
				seq, _, _, err := m.Append(ctx, "bob", "chat", strconv.Itoa(i), strconv.Itoa(j), head(j))
				if err != nil {
					return err
				}
				seqs <- seq
			}
			return nil
		})
		close(seqs)
		var got []int64
		for s := range seqs {
			got = append(got, s)
		}
		slices.Sort(got)
		for i, s := range got {
			if s != int64(i+1) {
				t.Fatalf("numbers %v: want 1..%d each once", got, senders*each)
			}
		}
	})
}

// head is the head of test message i.
func head(i int) []byte {
	return fmt.Appendf(nil, `{"from":"alice","action":"chat","ts":1,"text":"m%d","to":"bob","type":"message","seq":`, i)
}

// want is the frame of test message i kept with seq.
func want(i int, seq int64) string { return string(head(i)) + strconv.FormatInt(seq, 10) + "}" }

func appendN(t *testing.T, m Mailbox, user, action string, i int) int64 {
	t.Helper()
	seq, _, _, err := m.Append(t.Context(), user, action, "alice", "", head(i))
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

func read(t *testing.T, m Mailbox, user, action string, since int64, limit int) Page {
	t.Helper()
	p, err := m.Read(t.Context(), user, action, since, limit)
	if err != nil {
		t.Fatalf("Read(%s, %s, %d, %d): %v", user, action, since, limit, err)
	}
	return p
}

func assertSeqs(t *testing.T, p Page, want ...int64) {
	t.Helper()
	got := make([]int64, len(p.Mails))
	for i, m := range p.Mails {
		got[i] = m.Seq
	}
	if !slices.Equal(got, want) {
		t.Errorf("seqs = %v, want %v", got, want)
	}
}

func TestMemoryMailboxLimit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	frameLen := int64(len(want(0, 1)))
	per := frameLen + mailOverhead
	m := NewMemoryMailbox(MailboxOptions{}, 10*per) // room for 10 messages
	for i := 0; i < 4; i++ {
		appendN(t, m, "bob", "chat", i)   // bob: 1..4
		appendN(t, m, "carol", "chat", i) // carol: 1..4
	}
	appendN(t, m, "dave", "chat", 0) // 9 kept
	appendN(t, m, "dave", "chat", 0) // 10 kept
	if n, _ := m.Kept(); n != 10 || m.Dropped() != 0 {
		t.Fatalf("kept %d dropped %d, want 10 and 0", n, m.Dropped())
	}
	appendN(t, m, "erin", "chat", 0) // the oldest of all, bob's 1, goes
	appendN(t, m, "erin", "chat", 0) // then carol's 1
	appendN(t, m, "erin", "chat", 0) // then bob's 2
	if d := m.Dropped(); d != 3 {
		t.Errorf("Dropped = %d, want 3", d)
	}
	if n, b := m.Kept(); n != 10 || b > 10*per {
		t.Errorf("kept %d messages, %d bytes; want 10 within %d", n, b, 10*per)
	}
	p := read(t, m, "bob", "chat", 0, 10)
	assertSeqs(t, p, 3, 4)
	if !p.Gap {
		t.Error("bob: gap false, want true")
	}
	assertSeqs(t, read(t, m, "carol", "chat", 0, 10), 2, 3, 4)
	assertSeqs(t, read(t, m, "dave", "chat", 0, 10), 1, 2)
	// Erased and size-trimmed messages leave the age queue too.
	if _, err := m.Erase(ctx, "erin", ""); err != nil {
		t.Fatal(err)
	}
	small := NewMemoryMailbox(MailboxOptions{Size: 2}, 0)
	for i := 0; i < 10_000; i++ {
		appendN(t, small, "bob", "chat", i)
	}
	small.mu.Lock()
	queued := len(small.aged)
	small.mu.Unlock()
	if n, _ := small.Kept(); n != 2 || queued > 2048 {
		t.Errorf("Size 2 after 10000 appends: kept %d, age queue %d; want 2 and at most 2048", n, queued)
	}
}

func TestMemoryMailboxSweep(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	m := NewMemoryMailbox(MailboxOptions{TTL: time.Hour, Now: func() time.Time { return now }}, 0)
	for i := 0; i < 3; i++ {
		appendN(t, m, "bob", "chat", i)
	}
	now = now.Add(time.Hour + time.Millisecond)
	m.Sweep()
	if n, b := m.Kept(); n != 0 || b != 0 || m.Dropped() != 3 {
		t.Errorf("after Sweep: kept %d (%d bytes), dropped %d; want 0, 0, 3", n, b, m.Dropped())
	}
	if seq := appendN(t, m, "bob", "chat", 3); seq != 4 {
		t.Errorf("Append after expiry = %d, want 4", seq)
	}
}

func TestRedisMailbox(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	testMailbox(t, func(t *testing.T, opts MailboxOptions) Mailbox { return newRedisMailbox(t, srv.URL(), opts) })
}

func TestRedisClusterMailbox(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	testMailbox(t, func(t *testing.T, opts MailboxOptions) Mailbox { return newRedisMailbox(t, cl.URL(), opts) })
}

// newRedisMailbox returns a RedisMailbox with a key prefix of its own.
func newRedisMailbox(t *testing.T, url string, opts MailboxOptions) *RedisMailbox {
	t.Helper()
	c, err := NewRedisClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return NewRedisMailbox(c, "test:"+t.Name()+":", opts)
}
