package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 5 * time.Second

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) Store { return NewMemoryStore() }, func(t *testing.T, n int) Store {
		s := NewMemoryStore()
		s.SetMaxUserConnections(n)
		return s
	})
}

// testStore is the contract every Store implementation meets. newStore
// returns an empty store private to the (sub)test it is given.
// newCapped returns one whose users may have at most n connections.
func testStore(t *testing.T, newStore func(t *testing.T) Store, newCapped func(t *testing.T, n int) Store) {
	t.Run("MaxUserConnections", func(t *testing.T) {
		t.Parallel()
		s, ctx := newCapped(t, 3), t.Context()
		heartbeat(t, s, "n1", time.Minute)
		// Three connections in two actions, concurrently with a fourth
		// and fifth: exactly three are bound.
		var ok, refused atomic.Int32
		parallel(t, 5, func(i int) error {
			_, err := s.Bind(ctx, Binding{ConnID: fmt.Sprintf("c%d", i), UserID: "u", Action: []string{"a", "b"}[i%2], Node: "n1"})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrTooManyConnections):
				refused.Add(1)
			default:
				return err
			}
			return nil
		})
		if ok.Load() != 3 || refused.Load() != 2 {
			t.Fatalf("bound %d, refused %d; want 3 and 2", ok.Load(), refused.Load())
		}
		bs, err := s.UserBindings(ctx, "u")
		if err != nil || len(bs) != 3 {
			t.Fatalf("UserBindings = %d bindings, %v; want 3 (nothing left of the refused ones)", len(bs), err)
		}
		// Another user is not affected; after an unbind there is room again.
		bind(t, s, Binding{ConnID: "other", UserID: "v", Action: "a", Node: "n1"})
		if _, err := s.Unbind(ctx, bs[0].ConnID); err != nil {
			t.Fatal(err)
		}
		bind(t, s, Binding{ConnID: "again", UserID: "u", Action: "a", Node: "n1"})
	})

	t.Run("Bans", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		heartbeat(t, s, "n1", time.Minute)
		if _, ok, err := s.GetBan(ctx, "u"); err != nil || ok {
			t.Fatalf("GetBan before any = %v, %v; want none", ok, err)
		}
		until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
		if err := s.SetBan(ctx, "u", Ban{Until: until, Reason: "spam"}); err != nil {
			t.Fatal(err)
		}
		ban, ok, err := s.GetBan(ctx, "u")
		if err != nil || !ok || !ban.Until.Equal(until) || ban.Reason != "spam" {
			t.Fatalf("GetBan = %+v, %v, %v; want until %v, spam", ban, ok, err, until)
		}
		if _, err := s.Bind(ctx, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n1"}); !errors.Is(err, ErrBanned) {
			t.Fatalf("Bind of a banned user: err = %v, want ErrBanned", err)
		}
		if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a refused Bind left a binding: %v", err)
		}
		bind(t, s, Binding{ConnID: "c2", UserID: "other", Action: "a", Node: "n1"})
		if had, err := s.DeleteBan(ctx, "u"); err != nil || !had {
			t.Fatalf("DeleteBan = %v, %v; want true", had, err)
		}
		bind(t, s, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n1"})
		// A ban that has expired is no ban.
		if err := s.SetBan(ctx, "w", Ban{Until: time.Now().Add(50 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the ban to expire", func() bool {
			_, ok, err := s.GetBan(ctx, "w")
			return err == nil && !ok
		})
		bind(t, s, Binding{ConnID: "c3", UserID: "w", Action: "a", Node: "n1"})
	})

	t.Run("Blocks", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		if got, err := s.Blocks(ctx, "u"); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("Blocks before any = %v, %v; want []", got, err)
		}
		for _, o := range []string{"zed", "amy", "amy"} {
			if _, err := s.Block(ctx, "u", o); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := s.Blocks(ctx, "u"); !slices.Equal(got, []string{"amy", "zed"}) {
			t.Errorf("Blocks = %v, want [amy zed]", got)
		}
		if b, _ := s.Blocked(ctx, "u", "amy"); !b {
			t.Error("Blocked(u, amy) = false")
		}
		if b, _ := s.Blocked(ctx, "amy", "u"); b {
			t.Error("Blocked(amy, u) = true: a block goes one way")
		}
		if had, err := s.Unblock(ctx, "u", "amy"); err != nil || !had {
			t.Errorf("Unblock = %v, %v", had, err)
		}
		if b, _ := s.Blocked(ctx, "u", "amy"); b {
			t.Error("Blocked after Unblock")
		}
	})

	t.Run("HeartbeatLost", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		if alive, err := s.Heartbeat(ctx, "n1", 200*time.Millisecond); err != nil || alive {
			t.Fatalf("first Heartbeat = %v, %v; want false (none before)", alive, err)
		}
		if alive, err := s.Heartbeat(ctx, "n1", 200*time.Millisecond); err != nil || !alive {
			t.Fatalf("second Heartbeat = %v, %v; want true", alive, err)
		}
		// Once it has expired (the node's binding is reaped), the next
		// heartbeat reports it lost.
		bind(t, s, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n1"})
		waitFor(t, "the heartbeat to expire", func() bool {
			rs, err := s.Reap(ctx)
			return err == nil && len(rs) == 1
		})
		if alive, err := s.Heartbeat(ctx, "n1", time.Minute); err != nil || alive {
			t.Fatalf("Heartbeat after expiry = %v, %v; want false", alive, err)
		}
	})

	t.Run("BindGet", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		at := time.Now()
		b := Binding{ConnID: "c1", UserID: "auth0|5f7c", Action: "chat.room-1:x", Node: "n1", ConnectedAt: at}
		if first := bind(t, s, b); !first {
			t.Error("first = false for the user's only connection, want true")
		}
		got, err := s.Get(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		want := b
		want.ConnectedAt = at.Truncate(time.Millisecond)
		assertBinding(t, got, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(unknown): err = %v, want ErrNotFound", err)
		}
		if _, err := s.Unbind(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Unbind(unknown): err = %v, want ErrNotFound", err)
		}
		bind(t, s, Binding{ConnID: "c1", UserID: "u", Action: "a", Node: "n"})
		if _, err := s.Unbind(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Unbind(ctx, "c1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second Unbind: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Get(ctx, "c1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get after Unbind: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("FirstLast", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		binds := []struct {
			b     Binding
			first bool
		}{
			{Binding{ConnID: "a1", UserID: "alice", Action: "chat", Node: "n1"}, true},
			{Binding{ConnID: "a2", UserID: "alice", Action: "chat", Node: "n2"}, false}, // second device
			{Binding{ConnID: "a3", UserID: "alice", Action: "lobby", Node: "n1"}, true}, // other action
			{Binding{ConnID: "b1", UserID: "bob", Action: "chat", Node: "n1"}, true},    // other user
			{Binding{ConnID: "a4", UserID: "alice", Action: "chat", Node: "n1"}, false},
		}
		for _, tc := range binds {
			if got := bind(t, s, tc.b); got != tc.first {
				t.Errorf("Bind(%s): first = %v, want %v", tc.b.ConnID, got, tc.first)
			}
		}
		unbinds := []struct {
			id   string
			last bool
		}{
			{"a1", false},
			{"a3", true}, // alice's only lobby connection
			{"a4", false},
			{"b1", true},
			{"a2", true},
		}
		for _, tc := range unbinds {
			r, err := s.Unbind(ctx, tc.id)
			if err != nil {
				t.Fatalf("Unbind(%s): %v", tc.id, err)
			}
			if r.ConnID != tc.id || r.Last != tc.last {
				t.Errorf("Unbind(%s) = {%s, Last: %v}, want Last %v", tc.id, r.ConnID, r.Last, tc.last)
			}
		}
		// Alice comes back: first again.
		if !bind(t, s, Binding{ConnID: "a5", UserID: "alice", Action: "chat", Node: "n1"}) {
			t.Error("Bind after every connection left: first = false, want true")
		}
	})

	t.Run("Queries", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		at := time.UnixMilli(1_700_000_000_123)
		for _, b := range []Binding{
			{ConnID: "c3", UserID: "bob", Action: "chat", Node: "n1", ConnectedAt: at},
			{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1", ConnectedAt: at},
			{ConnID: "c2", UserID: "alice", Action: "chat", Node: "n2", ConnectedAt: at},
			{ConnID: "c0", UserID: "alice", Action: "lobby", Node: "n2", ConnectedAt: at},
			{ConnID: "c4", UserID: "carol", Action: "chat", Node: "n2", ConnectedAt: at},
		} {
			bind(t, s, b)
		}

		ub, err := s.UserBindings(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := connIDs(ub), []string{"c0", "c1", "c2"}; !slices.Equal(got, want) {
			t.Errorf("UserBindings(alice) = %v, want %v (sorted by connection id)", got, want)
		} else {
			assertBinding(t, ub[0], Binding{ConnID: "c0", UserID: "alice", Action: "lobby", Node: "n2", ConnectedAt: at})
		}
		if ub, err := s.UserBindings(ctx, "nobody"); err != nil || len(ub) != 0 {
			t.Errorf("UserBindings(nobody) = %v, %v; want none", ub, err)
		}

		conns, err := s.ActionConns(ctx, "chat")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"c1": "alice", "c2": "alice", "c3": "bob", "c4": "carol"}; !maps.Equal(conns, want) {
			t.Errorf("ActionConns(chat) = %v, want %v", conns, want)
		}
		if conns, err := s.ActionConns(ctx, "empty"); err != nil || len(conns) != 0 {
			t.Errorf("ActionConns(empty) = %v, %v; want none", conns, err)
		}

		users, err := s.ActionUsers(ctx, "chat")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"alice", "bob", "carol"}; !slices.Equal(users, want) {
			t.Errorf("ActionUsers(chat) = %v, want %v (sorted, distinct)", users, want)
		}
		if users, err := s.ActionUsers(ctx, "empty"); err != nil || len(users) != 0 {
			t.Errorf("ActionUsers(empty) = %v, %v; want none", users, err)
		}
		if n, err := s.CountUsers(ctx, "chat"); err != nil || n != 3 {
			t.Errorf("CountUsers(chat) = %d, %v; want 3", n, err)
		}
		if n, err := s.CountUsers(ctx, "empty"); err != nil || n != 0 {
			t.Errorf("CountUsers(empty) = %d, %v; want 0", n, err)
		}

		counts := []struct {
			action, user string
			want         int
		}{
			{"chat", "alice", 2},
			{"lobby", "alice", 1},
			{"chat", "bob", 1},
			{"lobby", "bob", 0},
			{"chat", "nobody", 0},
		}
		for _, tc := range counts {
			if n, err := s.CountUser(ctx, tc.action, tc.user); err != nil || n != tc.want {
				t.Errorf("CountUser(%s, %s) = %d, %v; want %d", tc.action, tc.user, n, err, tc.want)
			}
		}
		for action, want := range map[string]int{"chat": 4, "lobby": 1, "empty": 0} {
			if n, err := s.CountAction(ctx, action); err != nil || n != want {
				t.Errorf("CountAction(%s) = %d, %v; want %d", action, n, err, want)
			}
		}
	})

	t.Run("Rebind", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		bind(t, s, Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1"})
		// Binding the same connection id again replaces the binding.
		if !bind(t, s, Binding{ConnID: "c1", UserID: "alice", Action: "lobby", Node: "n1"}) {
			t.Error("rebind into another action: first = false, want true")
		}
		if n, _ := s.CountAction(ctx, "chat"); n != 0 {
			t.Errorf("CountAction(chat) after rebind = %d, want 0", n)
		}
		if ub, _ := s.UserBindings(ctx, "alice"); len(ub) != 1 || ub[0].Action != "lobby" {
			t.Errorf("UserBindings(alice) after rebind = %v, want one binding in lobby", ub)
		}
	})

	t.Run("ConcurrentFirstLast", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		const n = 16
		var firsts, lasts int
		var mu sync.Mutex
		parallel(t, n, func(i int) error {
			first, err := s.Bind(ctx, Binding{ConnID: fmt.Sprint("c", i), UserID: "alice", Action: "chat", Node: fmt.Sprint("n", i%3)})
			mu.Lock()
			defer mu.Unlock()
			if first {
				firsts++
			}
			return err
		})
		if firsts != 1 {
			t.Errorf("%d concurrent binds of one user reported first %d times, want once", n, firsts)
		}
		parallel(t, n, func(i int) error {
			r, err := s.Unbind(ctx, fmt.Sprint("c", i))
			mu.Lock()
			defer mu.Unlock()
			if r.Last {
				lasts++
			}
			return err
		})
		if lasts != 1 {
			t.Errorf("%d concurrent unbinds of one user reported last %d times, want once", n, lasts)
		}
	})

	t.Run("ReapExpired", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		heartbeat(t, s, "live", time.Minute)
		heartbeat(t, s, "dead", time.Millisecond)
		bind(t, s, Binding{ConnID: "live-x", UserID: "x", Action: "chat", Node: "live"})
		bind(t, s, Binding{ConnID: "dead-x", UserID: "x", Action: "chat", Node: "dead"})
		bind(t, s, Binding{ConnID: "dead-y1", UserID: "y", Action: "chat", Node: "dead"})
		bind(t, s, Binding{ConnID: "dead-y2", UserID: "y", Action: "chat", Node: "dead"})
		bind(t, s, Binding{ConnID: "dead-y3", UserID: "y", Action: "lobby", Node: "dead"})

		// The dead node's heartbeat expires a millisecond after it was sent.
		var removed []Removed
		waitFor(t, "dead node reaped", func() bool {
			rs, err := s.Reap(ctx)
			if err != nil {
				t.Fatal(err)
			}
			removed = append(removed, rs...)
			return len(removed) >= 4
		})
		got := byConn(t, removed)
		if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, []string{"dead-x", "dead-y1", "dead-y2", "dead-y3"}) {
			t.Fatalf("Reap removed %v, want the dead node's 4 bindings", ids)
		}
		if r := got["dead-x"]; r.Last || r.UserID != "x" || r.Action != "chat" || r.Node != "dead" {
			t.Errorf("reaped dead-x = %+v, want x in chat on dead, Last false (x is still on live)", r)
		}
		if got["dead-y1"].Last == got["dead-y2"].Last {
			t.Errorf("y's two chat connections reaped with Last %v and %v, want exactly one true",
				got["dead-y1"].Last, got["dead-y2"].Last)
		}
		if !got["dead-y3"].Last {
			t.Error("y's only lobby connection reaped with Last false, want true")
		}

		if rs, err := s.Reap(ctx); err != nil || len(rs) != 0 {
			t.Errorf("second Reap = %v, %v; want nothing", rs, err)
		}
		if _, err := s.Get(ctx, "live-x"); err != nil {
			t.Errorf("live node's binding: %v", err)
		}
		if users, _ := s.ActionUsers(ctx, "chat"); !slices.Equal(users, []string{"x"}) {
			t.Errorf("ActionUsers(chat) after Reap = %v, want [x]", users)
		}
		// A node that beats again is alive again.
		heartbeat(t, s, "dead", time.Minute)
		bind(t, s, Binding{ConnID: "back", UserID: "y", Action: "chat", Node: "dead"})
		if rs, err := s.Reap(ctx); err != nil || len(rs) != 0 {
			t.Errorf("Reap after the node came back = %v, %v; want nothing", rs, err)
		}
	})

	t.Run("ConcurrentReapers", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		heartbeat(t, s, "live", time.Minute)
		// "gone" never sent a heartbeat: its bindings are reapable at once.
		const users, perUser = 20, 6
		for u := range users {
			for i := range perUser {
				bind(t, s, Binding{
					ConnID: fmt.Sprintf("u%d-c%d", u, i),
					UserID: fmt.Sprint("u", u),
					Action: fmt.Sprint("a", i%2),
					Node:   "gone",
				})
			}
			if u%2 == 0 { // even users are still in a0 on a live node
				bind(t, s, Binding{ConnID: fmt.Sprintf("u%d-live", u), UserID: fmt.Sprint("u", u), Action: "a0", Node: "live"})
			}
		}

		var mu sync.Mutex
		var removed []Removed
		parallel(t, 8, func(i int) error {
			var rs []Removed
			var err error
			if i == 0 {
				rs, err = s.RemoveNode(ctx, "gone") // a node removing itself races the reapers
			} else {
				rs, err = s.Reap(ctx)
			}
			mu.Lock()
			defer mu.Unlock()
			removed = append(removed, rs...)
			return err
		})

		got := byConn(t, removed) // fails on a binding returned twice
		if len(got) != users*perUser {
			t.Fatalf("reapers removed %d bindings, want %d", len(got), users*perUser)
		}
		lasts := map[string]int{}
		for _, r := range got {
			if r.Last {
				lasts[r.UserID+"/"+r.Action]++
			}
		}
		for u := range users {
			for a := range 2 {
				key, want := fmt.Sprintf("u%d/a%d", u, a), 1
				if u%2 == 0 && a == 0 {
					want = 0
				}
				if lasts[key] != want {
					t.Errorf("%s reaped with Last %d times, want %d", key, lasts[key], want)
				}
			}
		}
		if n, _ := s.CountAction(ctx, "a0"); n != users/2 {
			t.Errorf("CountAction(a0) after reaping = %d, want %d (the live ones)", n, users/2)
		}
	})

	t.Run("RemoveNode", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		heartbeat(t, s, "n1", time.Minute)
		heartbeat(t, s, "n2", time.Minute)
		bind(t, s, Binding{ConnID: "c1", UserID: "x", Action: "chat", Node: "n1"})
		bind(t, s, Binding{ConnID: "c2", UserID: "x", Action: "lobby", Node: "n1"})
		bind(t, s, Binding{ConnID: "c3", UserID: "x", Action: "chat", Node: "n2"})

		rs, err := s.RemoveNode(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		got := byConn(t, rs)
		if len(got) != 2 || got["c1"].Last || !got["c2"].Last {
			t.Errorf("RemoveNode(n1) = %+v, want c1 (Last false, x is on n2) and c2 (Last true)", rs)
		}
		if got["c2"].UserID != "x" || got["c2"].Action != "lobby" || got["c2"].Node != "n1" {
			t.Errorf("removed c2 = %+v, want x in lobby on n1", got["c2"])
		}
		if _, err := s.Get(ctx, "c3"); err != nil {
			t.Errorf("n2's binding after RemoveNode(n1): %v", err)
		}
		if rs, err := s.RemoveNode(ctx, "n1"); err != nil || len(rs) != 0 {
			t.Errorf("second RemoveNode = %v, %v; want nothing", rs, err)
		}
		if rs, err := s.RemoveNode(ctx, "unknown"); err != nil || len(rs) != 0 {
			t.Errorf("RemoveNode(unknown) = %v, %v; want nothing", rs, err)
		}
		// RemoveNode deleted n1's heartbeat: what n1 binds now is reapable.
		bind(t, s, Binding{ConnID: "c4", UserID: "y", Action: "chat", Node: "n1"})
		rs, err = s.Reap(ctx)
		if err != nil || len(rs) != 1 || rs[0].ConnID != "c4" || !rs[0].Last {
			t.Errorf("Reap after RemoveNode(n1) = %+v, %v; want c4, Last true", rs, err)
		}
	})

	t.Run("Restore", func(t *testing.T) {
		t.Parallel()
		s, ctx := newStore(t), t.Context()
		at := time.UnixMilli(1_700_000_000_000)
		heartbeat(t, s, "n1", time.Minute)
		present := Binding{ConnID: "c1", UserID: "alice", Action: "chat", Node: "n1", ConnectedAt: at}
		bind(t, s, present)

		lost := Binding{ConnID: "c2", UserID: "bob", Action: "chat", Node: "n1", ConnectedAt: at}
		changed := present
		changed.UserID, changed.Action = "mallory", "lobby"
		restore := []Binding{changed, lost, lost}
		for range 2 { // restoring twice changes nothing
			if err := s.Restore(ctx, restore); err != nil {
				t.Fatal(err)
			}
			b, err := s.Get(ctx, "c1")
			if err != nil {
				t.Fatal(err)
			}
			assertBinding(t, b, present) // left as it was
			b, err = s.Get(ctx, "c2")
			if err != nil {
				t.Fatal(err)
			}
			assertBinding(t, b, lost)
			if n, _ := s.CountAction(ctx, "chat"); n != 2 {
				t.Errorf("CountAction(chat) = %d, want 2", n)
			}
			if n, _ := s.CountAction(ctx, "lobby"); n != 0 {
				t.Errorf("CountAction(lobby) = %d, want 0", n)
			}
			if n, _ := s.CountUser(ctx, "chat", "bob"); n != 1 {
				t.Errorf("CountUser(chat, bob) = %d, want 1", n)
			}
			if ub, _ := s.UserBindings(ctx, "mallory"); len(ub) != 0 {
				t.Errorf("UserBindings(mallory) = %v, want none", ub)
			}
		}
		if err := s.Restore(ctx, nil); err != nil {
			t.Errorf("Restore(nil) = %v", err)
		}
		// A restored binding is a full one: it unbinds as the last of bob's.
		if r, err := s.Unbind(ctx, "c2"); err != nil || !r.Last {
			t.Errorf("Unbind(c2) = %+v, %v; want Last true", r, err)
		}
		// And RemoveNode finds it.
		if err := s.Restore(ctx, []Binding{lost}); err != nil {
			t.Fatal(err)
		}
		if rs, err := s.RemoveNode(ctx, "n1"); err != nil || len(rs) != 2 {
			t.Errorf("RemoveNode after Restore = %v, %v; want c1 and c2", rs, err)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		if err := newStore(t).Ping(t.Context()); err != nil {
			t.Errorf("Ping = %v", err)
		}
	})
}

func bind(t *testing.T, s Store, b Binding) bool {
	t.Helper()
	first, err := s.Bind(t.Context(), b)
	if err != nil {
		t.Fatalf("Bind(%s): %v", b.ConnID, err)
	}
	return first
}

func heartbeat(t *testing.T, s Store, node string, ttl time.Duration) {
	t.Helper()
	if _, err := s.Heartbeat(t.Context(), node, ttl); err != nil {
		t.Fatalf("Heartbeat(%s): %v", node, err)
	}
}

func assertBinding(t *testing.T, got, want Binding) {
	t.Helper()
	if got.ConnID != want.ConnID || got.UserID != want.UserID || got.Action != want.Action ||
		got.Node != want.Node || !got.ConnectedAt.Equal(want.ConnectedAt) {
		t.Errorf("binding = %+v, want %+v", got, want)
	}
}

func connIDs(bs []Binding) []string {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ConnID
	}
	return ids
}

// byConn indexes removed bindings by connection id, failing the test if one
// was returned twice.
func byConn(t *testing.T, rs []Removed) map[string]Removed {
	t.Helper()
	m := make(map[string]Removed, len(rs))
	for _, r := range rs {
		if _, dup := m[r.ConnID]; dup {
			t.Errorf("binding %s removed twice", r.ConnID)
		}
		m[r.ConnID] = r
	}
	return m
}

// parallel runs fn(0..n-1) in n goroutines released at once and fails the
// test on the first error.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs <- fn(i)
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
