package routing

// Replay of a broken subscription from its target's history. Redis throws
// away what it had queued for a subscriber whose connection closed (CLIENT
// KILL, a network fault), after PUBLISH counted it, so a sender's ack may
// count connections that never get the message. The route scripts keep
// each message routed to other nodes in the target's history, a short
// stream listing the nodes it was published to (session/history_redis.go),
// and the envelope carries the entry's id. The receive loop remembers,
// per channel, the last id it received. When a channel broke, the manager
// reads its history after that id before it subscribes the channel again
// (the old connection's receive loop has returned by then: everything it
// read is delivered), and delivers what was published to this node: what
// Redis dropped with the old subscription. What is published after the
// read and before the new subscription reaches no subscriber here, and
// Redis says so to its sender (unavailable); what comes after, comes live.
// Reads are pipelined, many channels per round trip, so a node with many
// channels recovers quickly. Direct messages with a mailbox carry a seq
// instead and are repaired from the mailbox (mailbox.go).

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/session"
)

// histPos is where this node is in one channel's history.
type histPos struct {
	id HistID // the last entry received or scanned; zero: none yet
	// released is when the channel stopped being wanted (zero while it
	// is): its position is kept for a while, so that a new subscription
	// does not replay what the old one received.
	released time.Time
}

// historyPage is how many history entries one read scans.
const historyPage = 512

// histKeep is how long the position of a channel no longer wanted is
// kept: beyond it, the unknown position reads only the last HistoryTTL
// of the history, which by then holds nothing the node received.
const histKeep = 2 * session.HistoryTTL

// advance records that the envelope with id h arrived on ch, and reports
// whether it is new: false for one at or before the channel's position
// (a replay already delivered it).
func (s *subscriptions) advance(ch string, h HistID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pos[ch]
	if p == nil {
		p = &histPos{}
		if s.want[ch] == nil {
			p.released = time.Now() // in flight after its unsubscription
		}
		s.pos[ch] = p
	}
	if !p.id.IsZero() && !p.id.Less(h) {
		return false
	}
	p.id = h
	return true
}

// releasedLocked marks ch's position as no longer wanted (now), or wanted
// again (zero time). s.mu is held.
func (s *subscriptions) releasedLocked(ch string, now time.Time) {
	if p := s.pos[ch]; p != nil {
		p.released = now
	}
}

// sweepLocked forgets positions released longer than histKeep ago, at
// most once per HistoryTTL. s.mu is held.
func (s *subscriptions) sweepLocked(now time.Time) {
	if now.Sub(s.swept) < session.HistoryTTL {
		return
	}
	s.swept = now
	for ch, p := range s.pos {
		if !p.released.IsZero() && now.Sub(p.released) > histKeep {
			delete(s.pos, ch)
		}
	}
}

// historyBatch is how many channels' histories one pipeline reads.
const historyBatch = 256

// historyGiveUp is how long the manager keeps a broken channel
// unsubscribed while its history cannot be read, before it subscribes it
// anyway (what Redis dropped with it is then lost).
const historyGiveUp = 10 * time.Second

// replayJob is one broken channel to replay.
type replayJob struct {
	ch    string
	t     Topic
	after string
}

// replayBroken replays the history of each broken channel of add, and
// returns those whose history could not be read yet: the manager does not
// subscribe them until it could, or until historyGiveUp has passed.
func (s *subscriptions) replayBroken(ctx context.Context, add []string, deliver func(*Envelope) int) map[string]bool {
	var jobs []replayJob
	s.mu.Lock()
	for _, ch := range add {
		sub := s.want[ch]
		if sub == nil || !sub.broken || sub.replayed || sub.topic.Node != "" {
			continue
		}
		j := replayJob{ch: ch, t: sub.topic}
		if p := s.pos[ch]; p != nil && !p.id.IsZero() {
			j.after = p.id.String()
		}
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	var held map[string]bool
	for len(jobs) > 0 {
		n := min(len(jobs), historyBatch)
		batch := jobs[:n]
		jobs = jobs[n:]
		rctx, cancel := context.WithTimeout(ctx, s.b.cfg.Timeout)
		pipe := s.b.store.Client().Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i, j := range batch {
			cmds[i] = s.b.store.QueueReadHistory(rctx, pipe, session.Target{Action: j.t.Action, User: j.t.User}, s.b.cfg.Node, j.after, historyPage)
		}
		_, _ = pipe.Exec(rctx) // errors are read per command
		cancel()
		for i, j := range batch {
			page, err := session.ParseHistory(cmds[i], historyPage)
			if err == nil {
				err = s.replayPages(ctx, j, page, deliver)
			}
			if err != nil && !s.giveUp(j.ch, err) {
				if held == nil {
					held = make(map[string]bool)
				}
				held[j.ch] = true
				continue
			}
			s.mu.Lock()
			if sub := s.want[j.ch]; sub != nil {
				sub.replayed, sub.failingSince = true, time.Time{}
			}
			s.mu.Unlock()
		}
	}
	return held
}

// replayPages delivers the entries of page, and of the pages after it.
func (s *subscriptions) replayPages(ctx context.Context, j replayJob, page session.HistoryPage, deliver func(*Envelope) int) error {
	var env Envelope
	for {
		for _, e := range page.Entries {
			h, ok := parseHistID(e.ID)
			if !ok {
				continue
			}
			// Its own buffer: deliver may keep the payload (queued frames).
			buf := make([]byte, 0, len(e.Header)+1+len(e.Frame))
			buf = append(append(append(buf, e.Header...), 0), e.Frame...)
			if env.UnmarshalBinary(buf) != nil || !s.advance(j.ch, h) {
				continue
			}
			env.Hist = h
			deliver(&env)
			s.b.historyReplayed.Add(1)
		}
		if h, ok := parseHistID(page.Last); ok {
			s.advance(j.ch, h)
		}
		if !page.More {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, s.b.cfg.Timeout)
		var err error
		page, err = s.b.store.ReadHistory(rctx, session.Target{Action: j.t.Action, User: j.t.User}, s.b.cfg.Node, page.Last, historyPage)
		cancel()
		if err != nil {
			return err
		}
	}
}

// giveUp records that ch's history could not be read, and reports whether
// it has failed for historyGiveUp: the channel is then subscribed without
// its replay.
func (s *subscriptions) giveUp(ch string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.want[ch]
	if sub == nil {
		return true
	}
	now := time.Now()
	if sub.failingSince.IsZero() {
		sub.failingSince = now
	}
	if now.Sub(sub.failingSince) < historyGiveUp {
		return false
	}
	s.b.historyFailed.Add(1)
	s.b.log.Warn("cannot read the history of a broken subscription; what redis dropped with it is lost", "channel", ch, "err", err)
	return true
}
