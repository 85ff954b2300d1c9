package routing

// The subscription manager of RedisBroker. Connections reference topics
// (Subscribe/Unsubscribe); one goroutine, the manager, makes Redis follow:
// it places each wanted channel on a shard (the single Redis, or the
// cluster master that owns the channel's slot), keeps one subscription
// connection per shard, subscribes and unsubscribes, and rebuilds a shard
// whose connection broke, from the wanted set: what was unsubscribed
// meanwhile is never subscribed again, so nothing leaks across outages.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/session"
)

// subscription is one wanted channel.
type subscription struct {
	topic     Topic
	refs      int           // 0: unwanted, until the manager removes it
	ready     chan struct{} // closed once Redis confirmed the channel
	confirmed bool
	// broken: the channel was subscribed and its subscription went away
	// (connection lost, rebuilt, slot moved) while wanted; its next
	// confirmation is reported to RedisBroker.resubscribed.
	broken bool
	// replayed: its history was replayed since it broke
	// (broker_redis_history.go); failingSince is when reading it first
	// failed.
	replayed     bool
	failingSince time.Time
}

// moved is a shard's refusal (MOVED) of a subscription in slot.
type moved struct {
	sh   *shard
	slot uint16
}

// shard is one subscription connection and what was subscribed on it.
// Only the manager goroutine touches it.
type shard struct {
	key    string // "" on a single Redis, else the master's address
	ps     *redis.PubSub
	active map[string]bool
	closed chan struct{} // closed by the manager before it closes ps
	done   chan struct{} // closed when its receive loop has returned
	// unsubscribing counts the SUNSUBSCRIBEs sent per channel whose
	// answer has not come back: an answer is then ours, not Redis's
	// notice that the channel's slot moved (a channel unsubscribed and
	// subscribed again at once gets its old answer after the new
	// subscription).
	unsubscribing map[string]int
}

// unsubscribed is a sunsubscribe message read on sh: the answer to one of ours,
// or Redis unsubscribing ch by itself.
type unsubscribed struct {
	sh *shard
	ch string
}

type subscriptions struct {
	b *RedisBroker

	mu   sync.Mutex
	want map[string]*subscription
	// live holds the channels Redis confirmed on a connection that still
	// has them, so that a channel wanted again while still subscribed is
	// ready at once. The manager removes a channel from it before it
	// unsubscribes it.
	live map[string]bool

	changed chan struct{}     // a channel is wanted, or not wanted any more
	broken  chan *shard       // a shard's connection failed
	dropped chan unsubscribed // a sunsubscribe message: ours, or Redis's (slot moved)
	moved   chan moved        // a shard refused a subscription: not its slot
	rebuild chan string       // the probe found the shard of this channel silent

	// pos is each channel's position in its target's history
	// (broker_redis_history.go); swept is when it was last swept.
	pos   map[string]*histPos
	swept time.Time

	// The manager's own state.
	shards map[string]*shard
	placed map[string]*shard // channel → shard it was subscribed on
}

func (s *subscriptions) init(b *RedisBroker) {
	s.b = b
	s.want = make(map[string]*subscription)
	s.live = make(map[string]bool)
	s.pos = make(map[string]*histPos)
	s.changed = make(chan struct{}, 1)
	s.broken = make(chan *shard, 16)
	s.dropped = make(chan unsubscribed, 1024)
	s.moved = make(chan moved, 1024)
	s.rebuild = make(chan string, 1)
	s.shards = make(map[string]*shard)
	s.placed = make(map[string]*shard)
}

func (b *RedisBroker) channel(t Topic) string {
	if t.Node != "" {
		return b.store.NodeChannel(t.Node)
	}
	return b.store.Channel(session.Target{Action: t.Action, User: t.User}, b.cfg.Node)
}

// Subscribe implements Broker.
func (b *RedisBroker) Subscribe(ctx context.Context, t Topic) error {
	ch := b.channel(t)
	s := &b.subs
	s.mu.Lock()
	sub := s.want[ch]
	if sub == nil {
		sub = &subscription{topic: t, ready: make(chan struct{})}
		s.releasedLocked(ch, time.Time{})
		if s.live[ch] {
			sub.confirmed = true
			close(sub.ready)
		}
		s.want[ch] = sub
		wake(s.changed)
	}
	sub.refs++
	s.mu.Unlock()
	select {
	case <-sub.ready:
		return nil
	case <-ctx.Done():
		b.Unsubscribe(t)
		return fmt.Errorf("%w: subscribe: %w", ErrBrokerUnavailable, ctx.Err())
	}
}

// Unsubscribe implements Broker.
func (b *RedisBroker) Unsubscribe(t Topic) {
	ch := b.channel(t)
	s := &b.subs
	s.mu.Lock()
	if sub := s.want[ch]; sub != nil {
		// The manager removes it: a Subscribe before then takes it back,
		// already confirmed (Redis never stopped delivering it).
		if sub.refs--; sub.refs == 0 {
			wake(s.changed)
		}
	}
	s.mu.Unlock()
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run is the manager: it reconciles Redis with the wanted channels until
// ctx ends, then closes every shard.
func (s *subscriptions) run(ctx context.Context, deliver func(*Envelope) int) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	backoff := 100 * time.Millisecond
	// wait > 0 postpones the next reconcile: the slot map is being
	// reloaded, or a shard just broke (Redis may be down: no busy loop).
	var wait time.Duration
	for {
		if wait > 0 {
			retry.Reset(wait)
			wait = 0
		} else if !s.reconcile(ctx, deliver) {
			retry.Reset(backoff)
			backoff = min(2*backoff, 2*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			for _, sh := range s.shards {
				s.close(sh)
			}
			return
		case <-s.changed:
		case <-retry.C:
		case sh := <-s.broken:
			if s.shards[sh.key] == sh {
				s.b.log.Warn("redis subscription lost; resubscribing", "shard", shardName(sh))
				s.close(sh)
				wait = backoff
				backoff = min(2*backoff, 2*time.Second)
			}
		case d := <-s.dropped:
			switch n := d.sh.unsubscribing[d.ch]; {
			case n > 1:
				d.sh.unsubscribing[d.ch] = n - 1 // the answer to our SUNSUBSCRIBE
			case n == 1:
				delete(d.sh.unsubscribing, d.ch)
			case s.placed[d.ch] == d.sh && d.sh.active[d.ch]:
				// Redis moved the channel's slot to another master.
				s.mu.Lock()
				s.lostLocked(d.ch)
				s.mu.Unlock()
				delete(d.sh.active, d.ch)
				delete(s.placed, d.ch)
				s.reloadSlots(ctx)
				wait = slotReloadWait
			}
		case m := <-s.moved:
			// A subscription went to a master that no longer owns its
			// slot (the client's slot map was stale). The connection is
			// fine and keeps its other channels: place these again once
			// the slot map is reloaded.
			if s.shards[m.sh.key] == m.sh {
				for ch := range m.sh.active {
					if keySlot(ch) == m.slot {
						delete(m.sh.active, ch)
						delete(s.placed, ch)
					}
				}
				// A SUNSUBSCRIBE refused so gets no answer.
				for ch := range m.sh.unsubscribing {
					if keySlot(ch) == m.slot {
						delete(m.sh.unsubscribing, ch)
					}
				}
				s.reloadSlots(ctx)
				wait = slotReloadWait
			}
		case ch := <-s.rebuild:
			if sh := s.placed[ch]; sh != nil {
				s.b.log.Warn("redis subscription silent; rebuilding it", "shard", shardName(sh))
				s.close(sh)
			}
		}
	}
}

func shardName(sh *shard) string {
	if sh.key == "" {
		return "redis"
	}
	return sh.key
}

// close ends sh's connection and forgets what was placed on it; the next
// reconcile places those channels again.
func (s *subscriptions) close(sh *shard) {
	close(sh.closed)
	_ = sh.ps.Close() // its receive loop then returns
	<-sh.done
	s.mu.Lock()
	for ch := range sh.active {
		s.lostLocked(ch)
	}
	s.mu.Unlock()
	for ch := range sh.active {
		if s.placed[ch] == sh {
			delete(s.placed, ch)
		}
	}
	for ch, p := range s.placed {
		if p == sh {
			delete(s.placed, ch)
		}
	}
	delete(s.shards, sh.key)
}

// lostLocked records that Redis no longer delivers ch (its connection
// closed, or its slot moved): a wanted channel it had confirmed is broken,
// and its next confirmation is reported as a resubscription. s.mu is held.
func (s *subscriptions) lostLocked(ch string) {
	delete(s.live, ch)
	if sub := s.want[ch]; sub != nil && sub.confirmed {
		// Replayed again even if it was since it broke last: Redis may
		// have confirmed it, and counted messages for it, before this
		// connection was lost too.
		sub.broken, sub.replayed = true, false
	}
}

// reconcile subscribes what is wanted and not subscribed, and unsubscribes
// what is subscribed and not wanted. It reports whether everything went
// through.
func (s *subscriptions) reconcile(ctx context.Context, deliver func(*Envelope) int) bool {
	s.mu.Lock()
	now := time.Now()
	for ch, sub := range s.want {
		if sub.refs <= 0 {
			delete(s.want, ch)
			s.releasedLocked(ch, now)
		}
	}
	s.sweepLocked(now)
	var add []string
	for ch := range s.want {
		if s.placed[ch] == nil {
			add = append(add, ch)
		}
	}
	var del []string
	for ch := range s.placed {
		if s.want[ch] == nil {
			del = append(del, ch)
			delete(s.live, ch) // wanted again from now on, it waits for a new SUBSCRIBE
		}
	}
	s.mu.Unlock()

	ok := true
	// Unsubscribe first: a channel unsubscribed on a connection that then
	// fails is gone with it, so it is forgotten whatever the answer.
	byShard := make(map[*shard][]string)
	for _, ch := range del {
		sh := s.placed[ch]
		delete(s.placed, ch)
		delete(sh.active, ch)
		byShard[sh] = append(byShard[sh], ch)
	}
	for sh, chs := range byShard {
		err := s.send(ctx, sh, false, chs)
		if err != nil {
			ok = false
		}
		if (err != nil || len(sh.active) == 0) && s.shards[sh.key] == sh {
			s.close(sh) // after a failure, what Redis holds is unknown: start afresh
		}
	}

	// What a broken channel lost is replayed before it is subscribed
	// again (broker_redis_history.go).
	if held := s.replayBroken(ctx, add, deliver); len(held) > 0 {
		ok = false
		add = slices.DeleteFunc(add, func(ch string) bool { return held[ch] })
	}
	clear(byShard)
	for _, ch := range add {
		sh, err := s.shardFor(ctx, ch, deliver)
		if err != nil {
			ok = false
			continue
		}
		byShard[sh] = append(byShard[sh], ch)
	}
	for sh, chs := range byShard {
		if err := s.send(ctx, sh, true, chs); err != nil {
			ok = false
			// go-redis keeps the channels of a failed SUBSCRIBE and
			// subscribes them when its connection comes back, wanted or
			// not by then (a leak): start this shard afresh instead.
			if s.shards[sh.key] == sh {
				s.close(sh)
			}
			continue
		}
		for _, ch := range chs {
			sh.active[ch] = true
			s.placed[ch] = sh
		}
	}
	return ok
}

// shardFor returns the shard that owns ch, connecting to it if needed.
func (s *subscriptions) shardFor(ctx context.Context, ch string, deliver func(*Envelope) int) (*shard, error) {
	key := ""
	var client *redis.Client
	cc, cluster := s.b.store.Client().(*redis.ClusterClient)
	if cluster {
		c, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			return nil, err
		}
		client, key = c, c.Options().Addr
	}
	if sh := s.shards[key]; sh != nil {
		return sh, nil
	}
	sh := &shard{key: key, active: make(map[string]bool), unsubscribing: make(map[string]int),
		closed: make(chan struct{}), done: make(chan struct{})}
	if cluster {
		sh.ps = client.SSubscribe(ctx)
	} else {
		sh.ps = s.b.store.Client().Subscribe(ctx)
	}
	s.shards[key] = sh
	go s.receive(ctx, sh, deliver)
	return sh, nil
}

// reloadSlots makes the cluster client read the slot map again.
func (s *subscriptions) reloadSlots(ctx context.Context) {
	if cc, ok := s.b.store.Client().(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// send subscribes (or unsubscribes) chs on sh. A sharded subscription
// command takes the channels of one slot only, so on a cluster they go
// slot by slot.
func (s *subscriptions) send(ctx context.Context, sh *shard, sub bool, chs []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.b.cfg.Timeout)
	defer cancel()
	if sh.key == "" {
		for len(chs) > 0 {
			n := min(len(chs), 1000)
			var err error
			if sub {
				err = sh.ps.Subscribe(ctx, chs[:n]...)
			} else {
				err = sh.ps.Unsubscribe(ctx, chs[:n]...)
			}
			if err != nil {
				return err
			}
			chs = chs[n:]
		}
		return nil
	}
	bySlot := make(map[uint16][]string)
	for _, ch := range chs {
		bySlot[keySlot(ch)] = append(bySlot[keySlot(ch)], ch)
	}
	for _, group := range bySlot {
		var err error
		if sub {
			err = sh.ps.SSubscribe(ctx, group...)
		} else {
			for _, ch := range group {
				sh.unsubscribing[ch]++
			}
			err = sh.ps.SUnsubscribe(ctx, group...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// receive reads sh's connection until it fails or is closed, delivering
// envelopes and confirming subscriptions. A failure is reported to the
// manager, which rebuilds the shard (go-redis would resubscribe on its own,
// but in one command, which a cluster refuses for channels of several
// slots, and with channels unsubscribed meanwhile).
func (s *subscriptions) receive(ctx context.Context, sh *shard, deliver func(*Envelope) int) {
	defer close(sh.done)
	var env Envelope
	for {
		msg, err := sh.ps.Receive(ctx)
		if slot, ok := movedSlot(err); ok {
			select {
			case s.moved <- moved{sh, slot}:
			case <-sh.closed:
				return
			case <-ctx.Done():
				return
			}
			continue
		}
		if err != nil {
			select {
			case s.broken <- sh:
			case <-sh.closed:
			case <-ctx.Done():
			}
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				if t, again := s.confirm(m.Channel); again && s.b.resubscribed != nil {
					s.b.resubscribed(t)
				}
			case "sunsubscribe": // ours, or Redis's when the channel's slot moved
				select {
				case s.dropped <- unsubscribed{sh, m.Channel}:
				case <-sh.closed:
				case <-ctx.Done():
				}
			}
		case *redis.Message:
			if err := env.UnmarshalBinary([]byte(m.Payload)); err != nil {
				continue
			}
			if env.Kind == KindProbe {
				if env.Origin == s.b.cfg.Node {
					s.b.lastProbe.Store(time.Now().UnixNano())
				}
				continue
			}
			if !env.Hist.IsZero() && !s.advance(m.Channel, env.Hist) {
				continue // replayed from the history already
			}
			deliver(&env)
		}
	}
}

// slotReloadWait is how long the manager gives the cluster client to
// reload its slot map (in the background) before placing channels again.
const slotReloadWait = 50 * time.Millisecond

// movedSlot reports whether err is a MOVED reply, and its slot. go-redis
// keeps the connection after one (it is not broken), and so does the
// manager: closing it would lose what it has received and not yet read.
func movedSlot(err error) (uint16, bool) {
	if err == nil {
		return 0, false
	}
	if _, ok := redis.IsMovedError(err); !ok {
		return 0, false
	}
	f := strings.Fields(err.Error()) // "MOVED <slot> <host:port>"
	if len(f) < 3 {
		return 0, false
	}
	n, perr := strconv.ParseUint(f[1], 10, 16)
	if perr != nil {
		return 0, false
	}
	return uint16(n), true
}

// confirm records that Redis confirmed ch. It runs on the receive loop of
// ch's shard, before any message of the new subscription is read, and
// reports whether ch was subscribed before and broke: the resubscription
// is reported from here (Resubscriber).
func (s *subscriptions) confirm(ch string) (Topic, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.want[ch]
	if sub == nil {
		return Topic{}, false
	}
	s.live[ch] = true
	if !sub.confirmed {
		sub.confirmed = true
		close(sub.ready)
	}
	if !sub.broken {
		return Topic{}, false
	}
	sub.broken, sub.replayed = false, false
	return sub.topic, true
}

// keySlot is Redis Cluster's hash slot of key: CRC16 (XMODEM) of the key,
// or of its hash tag, modulo 16384.
func keySlot(key string) uint16 {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
