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
type MemoryStore struct {
	mu      sync.RWMutex
	conns   map[string]Binding           // conn id → binding
	actions map[string]map[string]string // action → conn id → user id
	users   map[string]map[string]string // user id → conn id → action
	members map[string]map[string]int    // action → user id → connections
	nodes   map[string]time.Time         // node → heartbeat expiry
	now     func() time.Time
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		conns:   make(map[string]Binding),
		actions: make(map[string]map[string]string),
		users:   make(map[string]map[string]string),
		members: make(map[string]map[string]int),
		nodes:   make(map[string]time.Time),
		now:     time.Now,
	}
}

// Bind implements Store.
func (m *MemoryStore) Bind(_ context.Context, b Binding) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.conns[b.ConnID]; ok {
		m.unbindLocked(old)
	}
	first := m.countUserLocked(b.Action, b.UserID) == 0
	m.bindLocked(b)
	return first, nil
}

func (m *MemoryStore) bindLocked(b Binding) {
	b.ConnectedAt = b.ConnectedAt.Truncate(time.Millisecond)
	m.conns[b.ConnID] = b
	a := m.actions[b.Action]
	if a == nil {
		a = make(map[string]string)
		m.actions[b.Action] = a
	}
	a[b.ConnID] = b.UserID
	u := m.users[b.UserID]
	if u == nil {
		u = make(map[string]string)
		m.users[b.UserID] = u
	}
	u[b.ConnID] = b.Action
	mem := m.members[b.Action]
	if mem == nil {
		mem = make(map[string]int)
		m.members[b.Action] = mem
	}
	mem[b.UserID]++
}

func (m *MemoryStore) unbindLocked(b Binding) Removed {
	delete(m.conns, b.ConnID)
	if a := m.actions[b.Action]; a != nil {
		delete(a, b.ConnID)
		if len(a) == 0 {
			delete(m.actions, b.Action)
		}
	}
	if u := m.users[b.UserID]; u != nil {
		delete(u, b.ConnID)
		if len(u) == 0 {
			delete(m.users, b.UserID)
		}
	}
	if mem := m.members[b.Action]; mem != nil {
		if mem[b.UserID]--; mem[b.UserID] <= 0 {
			delete(mem, b.UserID)
		}
		if len(mem) == 0 {
			delete(m.members, b.Action)
		}
	}
	return Removed{Binding: b, Last: m.countUserLocked(b.Action, b.UserID) == 0}
}

func (m *MemoryStore) countUserLocked(action, userID string) int {
	n := 0
	for _, a := range m.users[userID] {
		if a == action {
			n++
		}
	}
	return n
}

// Unbind implements Store.
func (m *MemoryStore) Unbind(_ context.Context, connID string) (Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.conns[connID]
	if !ok {
		return Removed{}, ErrNotFound
	}
	return m.unbindLocked(b), nil
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, connID string) (Binding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, ok := m.conns[connID]
	if !ok {
		return Binding{}, ErrNotFound
	}
	return b, nil
}

// UserBindings implements Store.
func (m *MemoryStore) UserBindings(_ context.Context, userID string) ([]Binding, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	bs := make([]Binding, 0, len(m.users[userID]))
	for id := range m.users[userID] {
		bs = append(bs, m.conns[id])
	}
	slices.SortFunc(bs, func(a, b Binding) int { return strings.Compare(a.ConnID, b.ConnID) })
	return bs, nil
}

// ActionConns implements Store.
func (m *MemoryStore) ActionConns(_ context.Context, action string) (map[string]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make(map[string]string, len(m.actions[action]))
	for id, u := range m.actions[action] {
		out[id] = u
	}
	return out, nil
}

// ActionUsers implements Store.
func (m *MemoryStore) ActionUsers(_ context.Context, action string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return DistinctUsers(m.actions[action]), nil
}

// CountUsers implements Store, in constant time.
func (m *MemoryStore) CountUsers(_ context.Context, action string) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.members[action]), nil
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
	return len(m.actions[action]), nil
}

// Heartbeat implements Store.
func (m *MemoryStore) Heartbeat(_ context.Context, node string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[node] = m.now().Add(ttl)
	return nil
}

// Reap implements Store.
func (m *MemoryStore) Reap(_ context.Context) ([]Removed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []Removed
	for _, b := range m.conns {
		if exp, ok := m.nodes[b.Node]; ok && exp.After(now) {
			continue
		}
		out = append(out, m.unbindLocked(b))
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
	for _, b := range m.conns {
		if b.Node == node {
			out = append(out, m.unbindLocked(b))
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
