package chaos

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// answer is what a sender was told about one message: an ack with its
// count, or an error code.
type answer struct {
	delivered int
	code      string // error code; "" for an ack
}

// client is a real WebSocket client. A reader goroutine files every frame:
// answers by message id, messages by stream, everything else dropped.
type client struct {
	t      testing.TB
	user   string
	action string
	node   *node

	wmu sync.Mutex // serialises writes
	ws  *websocket.Conn

	mu      sync.Mutex
	answers map[string]answer
	got     map[string][]int // stream → message numbers, in arrival order
	leaves  map[string]int   // user → leave events received
	dupes   []string
	closed  time.Time // when reading failed; zero while open
	done    chan struct{}
}

// dialOnline connects user to action on n and waits for ready.
func dialOnline(t testing.TB, n *node, action, user string) *client {
	t.Helper()
	c, err := tryOnline(n, action, user)
	if err != nil {
		t.Fatalf("%s online on %s: %v", user, n.id, err)
	}
	c.t = t
	t.Cleanup(c.close)
	return c
}

func tryOnline(n *node, action, user string) (*client, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(n.base(), "http")+"/ws", http.Header{})
	if err != nil {
		return nil, err
	}
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]any{"type": "online", "action": action, "user_id": user}); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(15 * time.Second))
	var ready map[string]any
	if err := ws.ReadJSON(&ready); err != nil {
		ws.Close()
		return nil, err
	}
	if ready["type"] != "ready" {
		ws.Close()
		return nil, errors.New("got " + ready["type"].(string) + " instead of ready")
	}
	_ = ws.SetReadDeadline(time.Time{})
	c := &client{
		user: user, action: action, node: n, ws: ws,
		answers: make(map[string]answer),
		got:     make(map[string][]int),
		leaves:  make(map[string]int),
		done:    make(chan struct{}),
	}
	go c.read()
	return c, nil
}

// inbound is the part of a frame the tests look at.
type inbound struct {
	Type      string  `json:"type"`
	ID        *string `json:"id"`
	Code      string  `json:"code"`
	Delivered *int    `json:"delivered"`
	Stream    string  `json:"stream"`
	UserID    string  `json:"user_id"`
	N         *int    `json:"n"`
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closed = time.Now()
			c.mu.Unlock()
			return
		}
		var m inbound
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		c.mu.Lock()
		switch {
		case m.Type == "ack" && m.Delivered != nil && m.ID != nil:
			c.answer(*m.ID, answer{delivered: *m.Delivered})
		case m.Type == "error" && m.ID != nil:
			c.answer(*m.ID, answer{code: m.Code})
		case m.Type == "leave":
			c.leaves[m.UserID]++
		case m.Type == "message" && m.N != nil && m.Stream != "":
			c.got[m.Stream] = append(c.got[m.Stream], *m.N)
		}
		c.mu.Unlock()
	}
}

// answer files the answer to id; called with c.mu held.
func (c *client) answer(id string, a answer) {
	if _, dup := c.answers[id]; dup {
		c.dupes = append(c.dupes, id)
		return
	}
	c.answers[id] = a
}

// send writes v; it reports whether the write went out.
func (c *client) send(v any) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteJSON(v) == nil
}

// received returns a copy of the numbers received on stream.
func (c *client) received(stream string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.got[stream]...)
}

// answerTo returns the answer to id, if one came.
func (c *client) answerTo(id string) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.answers[id]
	return a, ok
}

// closedAt returns when the connection was found closed (zero if open).
func (c *client) closedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// close closes the connection with 1000 and waits for the reader.
func (c *client) close() {
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	c.ws.Close()
	<-c.done
}

// watchLeaves returns a function that counts the leave events c has
// received for a user.
func watchLeaves(c *client) func(user string) int {
	return func(user string) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.leaves[user]
	}
}
