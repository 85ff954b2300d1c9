package session

import (
	"context"
	"maps"
	"slices"
)

var _ Moderation = (*MemoryStore)(nil)

func (m *MemoryStore) bannedLocked(user string) bool {
	ban, ok := m.bans[user]
	if ok && !ban.Until.After(m.now()) {
		delete(m.bans, user)
		return false
	}
	return ok
}

// SetBan implements Moderation.
func (m *MemoryStore) SetBan(_ context.Context, user string, ban Ban) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bans[user] = ban
	return nil
}

// GetBan implements Moderation.
func (m *MemoryStore) GetBan(_ context.Context, user string) (Ban, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.bannedLocked(user) {
		return Ban{}, false, nil
	}
	return m.bans[user], true, nil
}

// DeleteBan implements Moderation.
func (m *MemoryStore) DeleteBan(_ context.Context, user string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	had := m.bannedLocked(user)
	delete(m.bans, user)
	return had, nil
}

// Block implements Moderation.
func (m *MemoryStore) Block(_ context.Context, user, other string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.blocks[user]
	if _, ok := set[other]; ok {
		return false, nil
	}
	if len(set) >= MaxBlocks {
		return false, ErrTooManyBlocks
	}
	if set == nil {
		set = make(map[string]struct{})
		m.blocks[user] = set
	}
	set[other] = struct{}{}
	return true, nil
}

// Unblock implements Moderation.
func (m *MemoryStore) Unblock(_ context.Context, user, other string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := m.blocks[user]
	if _, ok := set[other]; !ok {
		return false, nil
	}
	delete(set, other)
	if len(set) == 0 {
		delete(m.blocks, user)
	}
	return true, nil
}

// Blocks implements Moderation.
func (m *MemoryStore) Blocks(_ context.Context, user string) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := slices.Sorted(maps.Keys(m.blocks[user]))
	if out == nil {
		out = []string{}
	}
	return out, nil
}

// Blocked implements Moderation.
func (m *MemoryStore) Blocked(_ context.Context, user, other string) (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.blocks[user][other]
	return ok, nil
}
