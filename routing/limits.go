package routing

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Limits protects a node at the door: they refuse WebSocket upgrades before
// any WebSocket frame, with an HTTP status a load balancer or client
// understands. The zero value means no limit.
type Limits struct {
	// MaxConnections caps this node's WebSocket connections (MAX_CONNECTIONS).
	// Beyond it an upgrade gets 503 with Retry-After, so a load balancer
	// tries another node. Default 0: no cap.
	MaxConnections int
	// HandshakeRate is the upgrades per second allowed per client IP
	// (HANDSHAKE_RATE); beyond it 429 with Retry-After. Default 0: off.
	HandshakeRate float64
	// HandshakeBurst is the burst of upgrades per client IP
	// (HANDSHAKE_BURST). Default: twice HandshakeRate, at least 1.
	HandshakeBurst int
	// TrustedProxies lists the proxies whose X-Forwarded-For is believed
	// (TRUSTED_PROXIES). The client IP is the TCP peer, or, when the peer is
	// trusted, the right-most X-Forwarded-For address that is not.
	TrustedProxies []netip.Prefix
	// HandshakeClients bounds the client IPs whose handshake rate is
	// tracked at once. Default 65536 (about 10 MiB at most).
	HandshakeClients int
}

// Reasons of switchboard_refusals_total.
const (
	refuseMaxConnections = "max_connections"
	refuseHandshakeRate  = "handshake_rate"
	refuseBadRequest     = "bad_request" // HTTP/1.0, or no Host
	// At online, after the handshake (docs/operations.md, "Protecting a public deployment").
	refuseTooManyConnections = CodeTooManyConnections
	refuseBanned             = CodeBanned
)

// retryAfterFull is the Retry-After of a node at MaxConnections, in seconds:
// long enough for a load balancer to try elsewhere, short enough for a
// client to come back soon.
const retryAfterFull = "5"

// door holds the state of a Router's Limits.
type door struct {
	lim  Limits
	open atomic.Int64 // WebSocket connections admitted and not yet ended
	ips  *ipLimiter   // nil when HandshakeRate is 0
}

func newDoor(l Limits) *door {
	d := &door{lim: l}
	if l.HandshakeRate > 0 {
		if d.lim.HandshakeBurst <= 0 {
			d.lim.HandshakeBurst = max(1, int(math.Ceil(2*l.HandshakeRate)))
		}
		if d.lim.HandshakeClients <= 0 {
			d.lim.HandshakeClients = 1 << 16
		}
		d.ips = newIPLimiter(rate.Limit(l.HandshakeRate), d.lim.HandshakeBurst, d.lim.HandshakeClients)
	}
	return d
}

// admit decides whether req may be upgraded. When it may, it has counted
// the connection: the caller calls leave once the connection has ended (or
// the upgrade failed). When it may not, it has answered and counted the
// refusal.
func (r *Router) admit(w http.ResponseWriter, req *http.Request) bool {
	d := r.door
	if !req.ProtoAtLeast(1, 1) || req.Host == "" {
		// RFC 6455 4.1: the handshake is HTTP/1.1 or later, with a Host.
		r.metrics.refusals.WithLabelValues(refuseBadRequest).Inc()
		http.Error(w, "a WebSocket handshake needs HTTP/1.1 and a Host header", http.StatusBadRequest)
		return false
	}
	if d.ips != nil {
		ip := clientIP(req, d.lim.TrustedProxies)
		if ok, wait := d.ips.allow(ip, time.Now()); !ok {
			r.metrics.refusals.WithLabelValues(refuseHandshakeRate).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			http.Error(w, "too many connection attempts; retry later", http.StatusTooManyRequests)
			return false
		}
	}
	if n := d.open.Add(1); d.lim.MaxConnections > 0 && n > int64(d.lim.MaxConnections) {
		d.open.Add(-1)
		r.metrics.refusals.WithLabelValues(refuseMaxConnections).Inc()
		w.Header().Set("Retry-After", retryAfterFull)
		http.Error(w, "this node is full; retry later or elsewhere", http.StatusServiceUnavailable)
		return false
	}
	return true
}

// leave ends a connection admitted by admit.
func (d *door) leave() { d.open.Add(-1) }

// clientIP returns the key of the client behind req: the TCP peer, or, when
// the peer is a trusted proxy, the right-most X-Forwarded-For address that
// is not one. An IPv6 client is keyed by its /64, which one subscriber
// usually holds whole.
func clientIP(req *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	client := peer
	if isTrusted(peer, trusted) {
		xff := req.Header.Values("X-Forwarded-For")
	walk:
		for i := len(xff) - 1; i >= 0; i-- {
			parts := strings.Split(xff[i], ",")
			for j := len(parts) - 1; j >= 0; j-- {
				s := strings.TrimSpace(parts[j])
				if s == "" {
					continue
				}
				a, err := netip.ParseAddr(s)
				if err != nil {
					// Only an untrusted hop can write garbage: it is
					// the client, by whatever it wrote (bounded below).
					if len(s) > 64 {
						s = s[:64]
					}
					return "xff:" + s
				}
				client = a.Unmap()
				if !isTrusted(client, trusted) {
					break walk
				}
			}
		}
	}
	if client.Is6() {
		p, _ := client.Prefix(64)
		return p.String()
	}
	return client.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipLimiter is a token bucket per client IP with bounded memory: it keeps
// two generations of buckets, each of at most half the capacity. A bucket
// used during the current generation moves into it; when the current one is
// full it becomes the previous one, and the buckets of clients not seen for
// a whole generation are forgotten (they were mostly full again: a
// forgotten client starts with a full burst, which is what it would have).
type ipLimiter struct {
	limit rate.Limit
	burst int
	half  int

	mu        sync.Mutex
	cur, prev map[string]*rate.Limiter
}

func newIPLimiter(limit rate.Limit, burst, capacity int) *ipLimiter {
	half := max(1, capacity/2)
	return &ipLimiter{limit: limit, burst: burst, half: half, cur: make(map[string]*rate.Limiter)}
}

// allow takes one token from ip's bucket. When there is none, it reports how
// long until there is.
func (l *ipLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.cur[ip]
	if b == nil {
		if b = l.prev[ip]; b != nil {
			delete(l.prev, ip)
		} else {
			b = rate.NewLimiter(l.limit, l.burst)
		}
		if len(l.cur) >= l.half {
			l.prev, l.cur = l.cur, make(map[string]*rate.Limiter, l.half)
		}
		l.cur[ip] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	// Time until one token: the deficit over the rate.
	wait := time.Duration((1 - b.TokensAt(now)) / float64(l.limit) * float64(time.Second))
	return false, max(wait, time.Second)
}

// size returns the number of buckets kept.
func (l *ipLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur) + len(l.prev)
}
