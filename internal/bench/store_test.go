package bench

import (
	"context"
	"testing"

	"github.com/switchboard/switchboard/internal/redistest"
)

func TestStoreCounterCountsThisRunsBindings(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, kv := range [][]any{
		{"HSET", "bt:conn:c1", "user_id", "st1.abc", "action", "benchabc_0"},
		{"HSET", "bt:conn:c2", "user_id", "ch7.abc", "action", "benchabc_0"},
		{"HSET", "bt:conn:c3", "user_id", "st1.zzz", "action", "benchzzz_0"}, // another run
		{"HSET", "other:conn:c4", "user_id", "st2.abc"},                      // another prefix
		{"HSET", "bt:action:benchabc_0", "c1", "st1.abc", "c2", "ch7.abc"},
	} {
		if _, err := srv.Do(kv...); err != nil {
			t.Fatalf("%v: %v", kv, err)
		}
	}
	s, err := newStoreCounter(srv.URL(), "bt:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		suffix     string
		wantConns  int64
		wantFields int64
	}{
		{".abc", 2, 2},
		{".zzz", 1, 2},
		{"", 3, 2},
	}
	for _, tt := range tests {
		conns, fields, err := s.count(ctx, tt.suffix, []string{"benchabc_0"})
		if err != nil {
			t.Fatalf("count(%q): %v", tt.suffix, err)
		}
		if conns != tt.wantConns || fields != tt.wantFields {
			t.Errorf("count(%q) = %d conns, %d fields; want %d, %d", tt.suffix, conns, fields, tt.wantConns, tt.wantFields)
		}
	}
}
