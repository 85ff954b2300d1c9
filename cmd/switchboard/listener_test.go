package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket handshakes are read by routing's listener, not net/http: these
// tests check what a client sees at that boundary.

// rawRequest sends req on a new TCP connection and returns the answer.
func rawRequest(t *testing.T, n *testNode, req string) (*http.Response, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, c
}

func TestHandshakeRefusals(t *testing.T) {
	n := startNode(t)
	upgrade := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	tests := []struct {
		name, req string
		code      int
		body      string
	}{
		{"plain GET", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 400, "WebSocket endpoint"},
		{"invalid action", "GET /ws/no%20spaces HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n", 400, "invalid action"},
		{"other path", "GET /wsx HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not found"}, // net/http answers
		{"query", "GET /ws?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "WebSocket endpoint"},
		{"malformed", "GET /ws HTTP/1.1\r\nno colon here\r\n\r\n", 400, "Bad Request"},
		{"headers too large", "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20+4096) + "\r\n\r\n", 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, c := rawRequest(t, n, tt.req)
			if resp.StatusCode != tt.code {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.code)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if !strings.Contains(strings.ToLower(string(body)), strings.ToLower(tt.body)) {
				t.Errorf("body = %.200q, want it to contain %q", body, tt.body)
			}
			if tt.code == 404 {
				if resp.Close {
					t.Errorf("net/http closed a connection it should keep alive")
				}
				return
			}
			if !resp.Close {
				t.Errorf("no Connection: close on a refused handshake")
			}
			// The server closes its side after the answer.
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				t.Errorf("after the answer: read err = %v, want EOF", err)
			}
		})
	}
	// The server took all of that and still serves.
	n.online(t, "room", "alice")
}

// trickleConn writes one byte per write call.
type trickleConn struct{ net.Conn }

func (c trickleConn) Write(b []byte) (int, error) {
	for i := range b {
		if _, err := c.Conn.Write(b[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(b), nil
}

// dialOver opens a WebSocket to path on a TCP connection that prepare has
// had first.
func dialOver(t *testing.T, n *testNode, path string, prepare func(net.Conn) (net.Conn, error)) *client {
	t.Helper()
	d := &websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		return prepare(c)
	}}
	c, err := n.tryDialWith(d, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.ws.Close() })
	return c
}

func TestHandshakeTrickled(t *testing.T) {
	n := startNode(t)
	c := dialOver(t, n, "/ws/room", func(c net.Conn) (net.Conn, error) {
		return trickleConn{c}, c.(*net.TCPConn).SetNoDelay(true)
	})
	c.send(map[string]any{"type": "online", "user_id": "alice"})
	if r := c.expect("ready"); r["action"] != "room" {
		t.Fatalf("ready = %v", r)
	}
}

// A browser may send its handshake on a connection that served the page.
func TestHandshakeOnKeptAliveConnection(t *testing.T) {
	n := startNode(t)
	c := dialOver(t, n, "/ws", func(c net.Conn) (net.Conn, error) {
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return nil, err
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, err
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close || br.Buffered() > 0 {
			return nil, errors.New("healthz did not leave the connection open and clean")
		}
		return c, nil
	})
	c.send(map[string]any{"type": "online", "action": "room", "user_id": "bob"})
	c.expect("ready")
	alice := n.online(t, "room", "alice")
	c.expectEvent("join", "alice")
	alice.send(map[string]any{"to": "bob", "text": "hi"})
	if m := c.next(); m["text"] != "hi" || m["from"] != "alice" {
		t.Fatalf("bob got %v", m)
	}
}

// A connection that never sends its request is closed at shutdown, not left
// to its read timeout.
func TestSilentConnectionClosedAtShutdown(t *testing.T) {
	n := startNode(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The listener has it once a request on another connection is served.
	resp, err := http.Get(n.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	n.stop()
	_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent connection still open %v after shutdown", time.Since(start))
	}
}
