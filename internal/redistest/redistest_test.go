package redistest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL() = %q, want redis://127.0.0.1:PORT", s.URL())
	}
	if s.Addr() == "127.0.0.1:6379" {
		t.Fatal("Start used the shared port 6379")
	}
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Do("GET", "k")
	if err != nil || got != "v" {
		t.Fatalf("GET k = %v, %v; want v", got, err)
	}
	if cfg, err := s.Client().ConfigGet(t.Context(), "save").Result(); err != nil || cfg["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v; want empty", cfg, err)
	}

	s.Stop()
	s.Stop() // idempotent
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Client().Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}

	addr := s.Addr()
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, s.Addr())
	}
	if _, err := s.Do("GET", "k"); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after Restart: err = %v, want redis.Nil (empty server)", err)
	}
}

func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	if n := len(strings.Split(c.URL(), ",")); n != 3 {
		t.Fatalf("URL() = %q, want 3 seeds", c.URL())
	}
	ctx := t.Context()
	cl := c.Client()
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := cl.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.Servers() {
		info, err := s.Client().ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("CLUSTER INFO on %s = %q, %v", s.Addr(), info, err)
		}
	}
}
