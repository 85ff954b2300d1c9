package session

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

var _ Store = (*MemoryStore)(nil)

// MemoryStore is a Store in process memory, for a single node (the default
// when no Redis is configured). It is safe for concurrent use, and several
// routers in one process may share it.
//
// Each binding is one memEntry, threaded on two intrusive lists (its action's
// and its user's) rather than filed in per-action and per-user maps: a small
// Go map costs hundreds of bytes even for one entry, and a server holds many
// actions and users with few connections each.
type MemoryStore struct {
	mu      sync.RWMutex
	conns   map[string]*memEntry     // conn id → binding
	actions map[string]*memAction    // action → its connections
	users   map[string]*memEntry     // user id → head of the user's list
	origins map[originKey]*memOrigin // node and time zone → bindings with them
	nodes   map[string]time.Time     // node → heartbeat expiry
	now     func() time.Time

	maxUserConns int
	bans         map[string]Ban                 // user → ban
	blocks       map[string]map[string]struct{} // user → users they block
}

// memEntry is one binding. The action's list is doubly linked so that a
// connection leaves a crowded action in constant time; the user's is singly
// linked, as a user has few connections and counting them walks it anyway.
//
// It keeps ConnectedAt as Unix seconds and nanoseconds, and the node and time
// zone, which most bindings share, in origin: that fits it in the 96-byte size
// class instead of 112. time.Unix(sec, nsec).In(loc) gives back exactly the
// truncated time that was bound.
type memEntry struct {
	connID, userID, action string
	origin                 *memOrigin
	sec                    int64
	aprev, anext           *memEntry // neighbours in the action's list
	unext                  *memEntry // next in the user's list
	nsec                   int32
}

func (e *memEntry) binding() Binding {
	return Binding{
		ConnID:      e.connID,
		UserID:      e.userID,
		Action:      e.action,
		Node:        e.origin.node,
		ConnectedAt: time.Unix(e.sec, int64(e.nsec)).In(e.origin.loc),
	}
}

type originKey struct {
	node string
	loc  *time.Location
}

// memOrigin is a node and time zone shared by refs bindings.
type memOrigin struct {
	originKey
	refs int
}

// memAction counts as it goes, so that CountAction and CountUsers, asked on
// every join and leave, need not walk the list.
type memAction struct {
	head  *memEntry
	conns int // connections in the list
	users int // distinct users among them
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		conns:   make(map[string]*memEntry),
		actions: make(map[string]*memAction),
		users:   make(map[string]*memEntry),
		origins: make(map[originKey]*memOrigin),
		nodes:   make(map[string]time.Time),
		now:     time.Now,
		bans:    make(map[string]Ban),
		blocks:  make(map[string]map[string]struct{}),
	}
}

// SetMaxUserConnections caps a user's connections across all actions
// (MAX_CONNECTIONS_PER_USER): Bind refuses one more with
// ErrTooManyConnections. 0, the default, means no cap.
func (m *MemoryStore) SetMaxUserConnections(n int) {
	m.mu.Lock()
	m.maxUserConns = max(n, 0)
	m.mu.Unlock()
}

// Bind implements Store.
func (m *MemoryStore) Bind(_ context.Context, b Binding) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bannedLocked(b.UserID) {
		return false, ErrBanned
	}
	if old, ok := m.conns[b.ConnID]; ok {
		m.unbindLocked(old)
	}
	if m.maxUserConns > 0 {
		n := 0
		for e := m.users[b.UserID]; e != nil; e = e.unext {
			n++
		}
		if n >= m.maxUserConns {
			return false, ErrTooManyConnections
		}
	}
	return m.bindLocked(b), nil
}

// bindLocked adds b, whose connection id is not bound, and reports whether it
// is the user's first connection in its action.
func (m *MemoryStore) bindLocked(b Binding) bool {
	at := b.ConnectedAt.Truncate(time.Millisecond)
	k := originKey{b.Node, at.Location()}
	o := m.origins[k]
	if o == nil {
		o = &memOrigin{originKey: k}
		m.origins[k] = o
	}
	o.refs++
	first := m.countUserLocked(b.Action, b.UserID) == 0
	e := &memEntry{
		connID: b.ConnID, userID: b.UserID, action: b.Action, origin: o,
		sec: at.Unix(), nsec: int32(at.Nanosecond()),
	}
	m.conns[b.ConnID] = e
	a := m.actions[b.Action]
	if a == nil {
		a = new(memAction)
		m.actions[b.Action] = a
	}
	if e.anext = a.head; e.anext != nil {
		e.anext.aprev = e
	}
	a.head = e
	a.conns++
	if first {
		a.users++
	}
	e.unext = m.users[b.UserID]
	m.users[b.UserID] = e
	return first
}

func (m *MemoryStore) unbindLocked(e *memEntry) Removed {
	b := e.binding()
	delete(m.conns, b.ConnID)
	if e.origin.refs--; e.origin.refs == 0 {
		delete(m.origins, e.origin.originKey)
	}
	if head := m.users[b.UserID]; head == e {
		if e.unext == nil {
			delete(m.users, b.UserID)
		} else {
			m.users[b.UserID] = e.unext
		}
	} else { // e is further down the user's list
		p := head
		for p.unext != e {
			p = p.unext
		}
		p.unext = e.unext
	}
	last := m.countUserLocked(b.Action, b.UserID) == 0
	a := m.actions[b.Action]
	if e.aprev == nil {
		a.head = e.anext
	} else {
		e.aprev.anext = e.anext
	}
	if e.anext != nil {
		e.anext.aprev = e.aprev
	}
	a.conns--
	if last {
		a.users--
	}
	if a.conns == 0 {
		delete(m.actions, b.Action)
	}
	return Removed{Binding: b, Last: last}
}

func (m *MemoryStore) countUserLocked(action, userID string) int {
	n := 0
	for e := m.users[userID]; e != nil; e = e.unext {
		if e.action == action {
			n++
		}
	}
	return n
}

// Unbind implements Store.
func (m *MemoryStore) Unbind(_ context.Context, connID string) (Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.conns[connID]
	if !ok {
		return Removed{}, ErrNotFound
	}
	return m.unbindLocked(e), nil
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, connID string) (Binding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.conns[connID]
	if !ok {
		return Binding{}, ErrNotFound
	}
	return e.binding(), nil
}

// UserBindings implements Store.
func (m *MemoryStore) UserBindings(_ context.Context, userID string) ([]Binding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bs := []Binding{}
	for e := m.users[userID]; e != nil; e = e.unext {
		bs = append(bs, e.binding())
	}
	slices.SortFunc(bs, func(a, b Binding) int { return strings.Compare(a.ConnID, b.ConnID) })
	return bs, nil
}

// ActionConns implements Store.
func (m *MemoryStore) ActionConns(_ context.Context, action string) (map[string]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a := m.actions[action]
	if a == nil {
		return map[string]string{}, nil
	}
	out := make(map[string]string, a.conns)
	for e := a.head; e != nil; e = e.anext {
		out[e.connID] = e.userID
	}
	return out, nil
}

// ActionUsers implements Store.
func (m *MemoryStore) ActionUsers(_ context.Context, action string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a := m.actions[action]
	if a == nil {
		return []string{}, nil
	}
	users := make([]string, 0, a.conns)
	for e := a.head; e != nil; e = e.anext {
		users = append(users, e.userID)
	}
	slices.Sort(users)
	return slices.Compact(users), nil
}

// CountUsers implements Store, in constant time.
func (m *MemoryStore) CountUsers(_ context.Context, action string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if a := m.actions[action]; a != nil {
		return a.users, nil
	}
	return 0, nil
}

// CountUser implements Store.
func (m *MemoryStore) CountUser(_ context.Context, action, userID string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.countUserLocked(action, userID), nil
}

// CountAction implements Store.
func (m *MemoryStore) CountAction(_ context.Context, action string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if a := m.actions[action]; a != nil {
		return a.conns, nil
	}
	return 0, nil
}

// Heartbeat implements Store.
func (m *MemoryStore) Heartbeat(_ context.Context, node string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	exp, ok := m.nodes[node]
	m.nodes[node] = now.Add(ttl)
	return ok && exp.After(now), nil
}

// Reap implements Store.
func (m *MemoryStore) Reap(_ context.Context) ([]Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []Removed
	for _, e := range m.conns {
		if exp, ok := m.nodes[e.origin.node]; ok && exp.After(now) {
			continue
		}
		out = append(out, m.unbindLocked(e))
	}
	for n, exp := range m.nodes {
		if !exp.After(now) {
			delete(m.nodes, n)
		}
	}
	return out, nil
}

// Restore implements Store.
func (m *MemoryStore) Restore(_ context.Context, bs []Binding) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range bs {
		if _, ok := m.conns[b.ConnID]; !ok {
			m.bindLocked(b)
		}
	}
	return nil
}

// RemoveNode implements Store.
func (m *MemoryStore) RemoveNode(_ context.Context, node string) ([]Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, node)
	var out []Removed
	for _, e := range m.conns {
		if e.origin.node == node {
			out = append(out, m.unbindLocked(e))
		}
	}
	return out, nil
}

// Ping implements Store; memory is always reachable.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }

// DistinctUsers returns the sorted distinct values of a conn id → user id map.
func DistinctUsers(conns map[string]string) []string {
	users := make([]string, 0, len(conns))
	for _, u := range conns {
		users = append(users, u)
	}
	slices.Sort(users)
	return slices.Compact(users)
}
