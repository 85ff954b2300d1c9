package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// testNode is a server started in-process on a free port.
type testNode struct {
	t      testing.TB
	s      *server
	url    string // http://127.0.0.1:PORT
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a server with the given flags (on top of an address of
// port 0) and waits for /healthz.
func startNode(t testing.TB, args ...string) *testNode {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0"}, args...)
	cfg, err := parseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := newServer(cfg, log)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{t: t, s: s, url: "http://" + s.Addr(), cancel: cancel, done: make(chan error, 1)}
	runningNodes.Add(1)
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(n.stop)
	waitFor(t, 5*time.Second, "healthz", func() bool {
		resp, err := http.Get(n.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return n
}

// stop shuts the node down gracefully and waits for it.
func (n *testNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			n.t.Errorf("server: %v", err)
		}
		nodeStopped(n.t) // leak_test.go
	case <-time.After(15 * time.Second):
		n.t.Errorf("server did not stop within 15s")
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// client is a real WebSocket client.
type client struct {
	t     testing.TB
	ws    *websocket.Conn
	name  string
	ready map[string]any // the ready message, after online
	in    chan frame     // frames read by the reader goroutine; closed after the final error
}

// frame is one message read, or the error that ended reading.
type frame struct {
	data []byte
	err  error
}

// dial opens a WebSocket to path (e.g. "/ws") on n.
func (n *testNode) dial(t testing.TB, path string, hdr http.Header) *client {
	t.Helper()
	c, err := n.tryDial(path, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { c.ws.Close() })
	c.t = t
	return c
}

func (n *testNode) tryDial(path string, hdr http.Header) (*client, error) {
	return n.tryDialWith(websocket.DefaultDialer, path, hdr)
}

func (n *testNode) tryDialWith(d *websocket.Dialer, path string, hdr http.Header) (*client, error) {
	u := "ws" + strings.TrimPrefix(n.url, "http") + path
	ws, resp, err := d.Dial(u, hdr)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	c := &client{ws: ws, name: path, in: make(chan frame, 100000)}
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			c.in <- frame{b, err}
			if err != nil {
				close(c.in)
				return
			}
		}
	}()
	return c, nil
}

// errTimeout: nothing arrived in time.
var errTimeout = errors.New("timeout waiting for a message")

// readFrame returns the next frame within timeout.
func (c *client) readFrame(timeout time.Duration) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f, ok := <-c.in:
		if !ok {
			return nil, errors.New("connection already closed")
		}
		return f.data, f.err
	case <-t.C:
		return nil, errTimeout
	}
}

// online dials /ws, sends online and waits for ready.
func (n *testNode) online(t testing.TB, action, user string) *client {
	t.Helper()
	c := n.dial(t, "/ws", nil)
	c.name = user
	c.send(map[string]any{"type": "online", "action": action, "user_id": user})
	r := c.expect("ready")
	c.ready = r
	if r["user_id"] != user || r["action"] != action || r["connection_id"] == "" {
		t.Fatalf("ready = %v, want user %q action %q", r, user, action)
	}
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// read returns the next message, or fails after timeout.
func (c *client) read(timeout time.Duration) (map[string]any, error) {
	b, err := c.readFrame(timeout)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("server sent invalid JSON %q: %w", b, err)
	}
	return m, nil
}

// next returns the next message, skipping join/leave events.
func (c *client) next() map[string]any {
	c.t.Helper()
	for {
		m, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("%s: read: %v", c.name, err)
		}
		if m["type"] == "join" || m["type"] == "leave" {
			continue
		}
		return m
	}
}

// expect reads the next non-event message and checks its type.
func (c *client) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("%s: got %v, want type %q", c.name, m, typ)
	}
	return m
}

// expectError reads the next message and checks it is an error with code.
func (c *client) expectError(code string) map[string]any {
	c.t.Helper()
	m := c.expect("error")
	if m["code"] != code {
		c.t.Fatalf("%s: got error %v, want code %q", c.name, m, code)
	}
	if m["message"] == "" {
		c.t.Fatalf("%s: error %v has no message", c.name, m)
	}
	return m
}

// expectEvent reads the next message, which must be the event typ for user.
func (c *client) expectEvent(typ, user string) {
	c.t.Helper()
	m, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: read: %v", c.name, err)
	}
	if m["type"] != typ || m["user_id"] != user {
		c.t.Fatalf("%s: got %v, want %s of %q", c.name, m, typ, user)
	}
}

// expectEvents reads len(users) events of type typ, one for each user, in
// any order.
func (c *client) expectEvents(typ string, users ...string) {
	c.t.Helper()
	want := make(map[string]bool, len(users))
	for _, u := range users {
		want[u] = true
	}
	for range users {
		m, err := c.read(5 * time.Second)
		if err != nil {
			c.t.Fatalf("%s: read: %v", c.name, err)
		}
		u, _ := m["user_id"].(string)
		if m["type"] != typ || !want[u] {
			c.t.Fatalf("%s: got %v, want %s of one of %v", c.name, m, typ, users)
		}
		delete(want, u)
	}
}

// expectClose reads until the connection closes and checks the close code.
func (c *client) expectClose(code int) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.readFrame(time.Until(deadline))
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("%s: got %v, want close %d", c.name, err, code)
		}
		if ce.Code != code {
			c.t.Fatalf("%s: got close %d %q, want %d", c.name, ce.Code, ce.Text, code)
		}
		return
	}
}

// expectNothing checks that nothing but join/leave arrives within d.
func (c *client) expectNothing(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.read(time.Until(deadline))
		if errors.Is(err, errTimeout) {
			return
		}
		if err != nil {
			c.t.Fatalf("%s: read: %v", c.name, err)
		}
		if m["type"] != "join" && m["type"] != "leave" {
			c.t.Fatalf("%s: got unexpected %v", c.name, m)
		}
	}
}

// expectEventWithin waits up to d for the event typ of user, skipping other messages.
func (c *client) expectEventWithin(typ, user string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s: no %s of %q within %v: %v", c.name, typ, user, d, err)
		}
		if m["type"] == typ && m["user_id"] == user {
			return
		}
	}
}

// drain discards whatever arrives within a short window.
func (c *client) drain() {
	for {
		if _, err := c.read(50 * time.Millisecond); err != nil {
			return
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// expectErrorWithin waits up to d for an error with code.
func (c *client) expectErrorWithin(code string, d time.Duration) {
	c.t.Helper()
	m, err := c.read(d)
	if err != nil {
		c.t.Fatalf("%s: no %s within %v: %v", c.name, code, d, err)
	}
	if m["type"] != "error" || m["code"] != code {
		c.t.Fatalf("%s: got %v, want error %s", c.name, m, code)
	}
}
