package routing

import (
	"net/http"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"peer", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"header of an untrusted peer ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer without header", "10.0.0.1:4000", nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"right-most untrusted", "10.0.0.1:4000", []string{"192.0.2.9, 198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"several headers", "10.0.0.1:4000", []string{"192.0.2.9", "198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"spoofed left part ignored", "10.0.0.1:4000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"all trusted: the left-most", "10.0.0.1:4000", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"garbage written by the client's hop", "10.0.0.1:4000", []string{"nonsense"}, "xff:nonsense"},
		{"IPv4-mapped", "[::ffff:203.0.113.5]:4000", nil, "203.0.113.5"},
		{"IPv6 by /64", "[2001:db8:1:2:3:4:5:6]:4000", nil, "2001:db8:1:2::/64"},
		{"IPv6 behind a trusted IPv6 proxy", "[fd00::1]:4000", []string{"2001:db8:9:9::1"}, "2001:db8:9:9::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(req, trusted); got != tc.want {
				t.Fatalf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIPLimiter(t *testing.T) {
	now := time.Unix(1700000000, 0)
	l := newIPLimiter(1, 2, 100)
	for i := range 2 {
		if ok, _ := l.allow("a", now); !ok {
			t.Fatalf("upgrade %d of the burst refused", i)
		}
	}
	ok, wait := l.allow("a", now)
	if ok || wait < time.Second {
		t.Fatalf("third upgrade: ok %v, retry after %v; want refused, at least 1s", ok, wait)
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Fatal("another client refused")
	}
	if ok, _ := l.allow("a", now.Add(time.Second)); !ok {
		t.Fatal("refused after the bucket refilled")
	}
}

// TestIPLimiterBounded: a million distinct clients do not grow the state
// beyond its capacity, and a client that keeps coming keeps its bucket.
func TestIPLimiterBounded(t *testing.T) {
	const capacity = 1000
	now := time.Unix(1700000000, 0)
	l := newIPLimiter(1, 1, capacity)
	l.allow("steady", now)
	for i := range 1_000_000 {
		l.allow("ip"+strconv.Itoa(i), now)
		if i%100 == 0 {
			if ok, _ := l.allow("steady", now); ok {
				t.Fatalf("after %d other clients: the steady client's empty bucket was forgotten", i)
			}
		}
		if n := l.size(); n > capacity {
			t.Fatalf("after %d clients: %d buckets kept, capacity %d", i, n, capacity)
		}
	}
}

func TestDoorDefaults(t *testing.T) {
	for _, tc := range []struct {
		rate      float64
		wantBurst int
	}{{2, 4}, {2.5, 5}, {0.1, 1}} {
		if d := newDoor(Limits{HandshakeRate: tc.rate}); d.lim.HandshakeBurst != tc.wantBurst || d.lim.HandshakeClients != 1<<16 {
			t.Errorf("rate %v: burst %d, clients %d; want %d, 65536", tc.rate, d.lim.HandshakeBurst, d.lim.HandshakeClients, tc.wantBurst)
		}
	}
	if d := newDoor(Limits{}); d.ips != nil {
		t.Error("a handshake limiter without HandshakeRate")
	}
}
