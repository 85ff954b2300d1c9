package bench

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	c, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("ParseFlags(nil) error: %v", err)
	}
	if got, want := c.URL, "ws://127.0.0.1:8080/ws"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if got, want := len(c.Sources), 4; got != want {
		t.Errorf("len(Sources) = %d, want %d", got, want)
	}
	if c.Rate != 0 {
		t.Errorf("direct Rate = %v, want 0 (closed loop)", c.Rate)
	}
	b, err := ParseFlags([]string{"-scenario", "broadcast"}, io.Discard)
	if err != nil {
		t.Fatalf("broadcast: %v", err)
	}
	if got, want := b.Rate, 50.0; got != want {
		t.Errorf("broadcast default Rate = %v, want %v", got, want)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // substring of the error
	}{
		{"unknown scenario", []string{"-scenario", "flood"}, "unknown -scenario"},
		{"bad url scheme", []string{"-url", "http://127.0.0.1:8080/ws"}, "bad WebSocket URL"},
		{"bad url2", []string{"-url2", "127.0.0.1"}, "bad WebSocket URL"},
		{"zero pairs", []string{"-pairs", "0"}, "-pairs"},
		{"zero window closed loop", []string{"-window", "0"}, "-window"},
		{"negative rate", []string{"-rate", "-1"}, "-rate"},
		{"broadcast zero rate", []string{"-scenario", "broadcast", "-rate", "0"}, "-rate"},
		{"broadcast zero subs", []string{"-scenario", "broadcast", "-subs", "0"}, "-subs"},
		{"idle zero conns", []string{"-scenario", "idle", "-conns", "0"}, "-conns"},
		{"no bound", []string{"-duration", "0"}, "bound"},
		{"over hard cap", []string{"-duration", "11m"}, "-max-time"},
		{"max-time over cap", []string{"-max-time", "20m"}, "-max-time"},
		{"tiny size", []string{"-size", "10"}, "-size"},
		{"churn rate", []string{"-scenario", "churn", "-churn-rate", "0"}, "-churn-rate"},
		{"abrupt range", []string{"-scenario", "churn", "-abrupt", "2"}, "-abrupt"},
		{"dial concurrency", []string{"-dial-concurrency", "0"}, "-dial-concurrency"},
		{"bad source", []string{"-sources", "localhost"}, "-sources"},
		{"bad source range", []string{"-sources", "127.0.0.9-3"}, "-sources"},
		{"stray argument", []string{"direct"}, "unexpected"},
		{"zero actions", []string{"-actions", "0"}, "-actions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFlags(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseFlags(%q) error = %v, want one containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestParseFlagsValid(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"open loop", []string{"-rate", "10000", "-pairs", "200", "-duration", "20s"}},
		{"count only", []string{"-duration", "0", "-count", "1000"}},
		{"two nodes", []string{"-url2", "ws://127.0.0.1:8081/ws"}},
		{"idle", []string{"-scenario", "idle", "-conns", "15000", "-pid", "1"}},
		{"churn without steady", []string{"-scenario", "churn", "-conns", "0", "-duration", "30s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFlags(tt.args, io.Discard); err != nil {
				t.Fatalf("ParseFlags(%q) error: %v", tt.args, err)
			}
		})
	}
}

func TestParseSources(t *testing.T) {
	got, err := ParseSources("127.0.0.1-3, 127.0.1.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []net.IP{
		net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 1, 1),
	}
	if len(got) != len(want) {
		t.Fatalf("ParseSources = %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Errorf("ParseSources[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestValidateWarmupCountsTowardCap(t *testing.T) {
	c, err := ParseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c.Warmup = 5 * time.Minute
	c.Duration = 5 * time.Minute
	if err := c.Validate(); err == nil {
		t.Fatal("Validate accepted warmup+duration equal to the hard cap")
	}
}
