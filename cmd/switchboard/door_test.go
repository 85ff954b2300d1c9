package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawUpgrade sends a WebSocket handshake for path from the loopback address
// from (e.g. "127.0.0.2") over a raw TCP connection and returns the answer,
// the connection, and its reader (whatever follows the answer).
func rawUpgrade(t *testing.T, n *testNode, from, path string, hdr map[string]string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(n.url, "http://") +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for k, v := range hdr {
		req += k + ": " + v + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake from %s: %v", from, err)
	}
	return resp, c, br
}

// expectRefused checks an answer: status, a Retry-After of whole seconds,
// and a plain HTTP body with no WebSocket frame after it.
func expectRefused(t *testing.T, resp *http.Response, br *bufio.Reader, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d", resp.StatusCode, status)
	}
	var secs int
	if _, err := fmt.Sscanf(resp.Header.Get("Retry-After"), "%d", &secs); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	body := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("byte %#x after the refusal, want the connection closed", b)
	}
}

func TestMaxConnections(t *testing.T) {
	n := startNode(t, "--max-connections", "2")
	w := watchMetrics(t, n)
	a := n.online(t, "chat", "alice")
	n.online(t, "chat", "bob")
	resp, _, br := rawUpgrade(t, n, "127.0.0.1", "/ws", nil)
	expectRefused(t, resp, br, http.StatusServiceUnavailable)
	w.expect(map[string]float64{`switchboard_refusals_total{reason="max_connections"}`: 1})
	// A connection that leaves makes room.
	a.ws.Close()
	waitFor(t, 10*time.Second, "room for a connection", func() bool {
		c, err := n.tryDial("/ws", nil)
		if err != nil {
			return false
		}
		c.ws.Close()
		return true
	})
}

func TestHandshakeRate(t *testing.T) {
	n := startNode(t, "--handshake-rate", "0.01", "--handshake-burst", "2", "--trusted-proxies", "127.0.0.3/32")
	w := watchMetrics(t, n)
	upgraded := func(from string, hdr map[string]string) *http.Response {
		resp, c, _ := rawUpgrade(t, n, from, "/ws", hdr)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			c.Close()
		}
		return resp
	}
	// 127.0.0.1 spends its burst, then is refused; 127.0.0.2 is not.
	for i := range 2 {
		if resp := upgraded("127.0.0.1", nil); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade %d: %d, want 101", i, resp.StatusCode)
		}
	}
	resp, _, br := rawUpgrade(t, n, "127.0.0.1", "/ws", nil)
	expectRefused(t, resp, br, http.StatusTooManyRequests)
	if resp := upgraded("127.0.0.2", nil); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("another IP: %d, want 101", resp.StatusCode)
	}

	// An untrusted peer's X-Forwarded-For is ignored: 127.0.0.2 cannot
	// pose as many clients.
	upgraded("127.0.0.2", map[string]string{"X-Forwarded-For": "198.51.100.1"})
	resp, _, br = rawUpgrade(t, n, "127.0.0.2", "/ws", map[string]string{"X-Forwarded-For": "198.51.100.2"})
	expectRefused(t, resp, br, http.StatusTooManyRequests)

	// Behind the trusted proxy 127.0.0.3, each client has its own bucket,
	// taken from the right-most address the proxy did not add itself.
	for i := range 2 {
		if resp := upgraded("127.0.0.3", map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.7"}); resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("proxied upgrade %d: %d, want 101", i, resp.StatusCode)
		}
	}
	resp, _, br = rawUpgrade(t, n, "127.0.0.3", "/ws", map[string]string{"X-Forwarded-For": "9.9.9.9, 203.0.113.7"})
	expectRefused(t, resp, br, http.StatusTooManyRequests)
	if resp := upgraded("127.0.0.3", map[string]string{"X-Forwarded-For": "203.0.113.8"}); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("another client behind the proxy: %d, want 101", resp.StatusCode)
	}
	w.expect(map[string]float64{`switchboard_refusals_total{reason="handshake_rate"}`: 3})
}

// TestHandshakeNeedsHTTP11AndHost: RFC 6455 4.1 asks for HTTP/1.1 or later
// and a Host header; anything else is refused with 400 before any frame.
func TestHandshakeNeedsHTTP11AndHost(t *testing.T) {
	n := startNode(t)
	w := watchMetrics(t, n)
	host := strings.TrimPrefix(n.url, "http://")
	const ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, req := range []string{
		"GET /ws HTTP/1.0\r\nHost: " + host + "\r\n" + ws + "\r\n",
		"GET /ws/chat HTTP/1.0\r\n" + ws + "\r\n",
		"GET /ws HTTP/1.1\r\n" + ws + "\r\n",
	} {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", strings.SplitN(req, "\r\n", 2)[0], resp.StatusCode)
		}
		c.Close()
	}
	w.expect(map[string]float64{`switchboard_refusals_total{reason="bad_request"}`: 3})
}

func TestLimitsConfig(t *testing.T) {
	cfg, err := parseConfig([]string{"--trusted-proxies", "10.0.0.0/8, 192.168.1.1,fd00::/8", "--handshake-rate", "2.5", "--max-connections", "100"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.TrustedProxies); got != "[10.0.0.0/8 192.168.1.1/32 fd00::/8]" {
		t.Errorf("TrustedProxies = %s", got)
	}
	if cfg.HandshakeRate != 2.5 || cfg.HandshakeBurst != 0 || cfg.MaxConnections != 100 || cfg.OutboundStall != 2*time.Second || cfg.OutboundMaxBytes != 64<<20 {
		t.Errorf("limits = %+v", cfg.limitsConfig)
	}
	for _, args := range [][]string{
		{"--trusted-proxies", "10.0.0.0/33"},
		{"--trusted-proxies", "proxy.example"},
		{"--handshake-rate", "-1"},
		{"--handshake-rate", "NaN"},
		{"--max-connections", "-5"},
		{"--outbound-stall", "0s"},
	} {
		if _, err := parseConfig(args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	// The environment works as for every option.
	env := map[string]string{"MAX_CONNECTIONS": "7", "TRUSTED_PROXIES": "127.0.0.1"}
	cfg, err = parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.MaxConnections != 7 || len(cfg.TrustedProxies) != 1 {
		t.Fatalf("from the environment: %+v, %v", cfg.limitsConfig, err)
	}
}
