// Package relay is the reference "bare relay" for benchmarks: a minimal
// gorilla/websocket server that speaks just enough of Switchboard's
// protocol for sbbench's scenarios and does nothing else — no stamping, no
// validation, no limits. A message is one map lookup under an RWMutex and a
// write under the receiving connection's mutex, so its figures are the
// practical upper bound for a relay on the same machine.
package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// Relay is an http.Handler serving /ws (and /ws/{anything}), /healthz and
// /metrics (switchboard_connections, go_goroutines). Safe for concurrent use.
type Relay struct {
	upgrader websocket.Upgrader
	nextID   atomic.Uint64
	conns    atomic.Int64

	mu      sync.RWMutex
	users   map[userKey][]*conn
	actions map[string][]*conn
}

type userKey struct{ action, user string }

type conn struct {
	ws     *websocket.Conn
	wmu    sync.Mutex
	action string
	user   string
}

// New returns a Relay. Upgrades reuse net/http's 4 KB buffers and accept
// any Origin.
func New() *Relay {
	return &Relay{
		upgrader: websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }},
		users:    make(map[userKey][]*conn),
		actions:  make(map[string][]*conn),
	}
}

// ServeHTTP implements http.Handler.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch {
	case req.URL.Path == "/healthz":
		fmt.Fprintln(w, "ok")
	case req.URL.Path == "/metrics":
		fmt.Fprintf(w, "switchboard_connections %d\ngo_goroutines %d\n", r.conns.Load(), runtime.NumGoroutine())
	case req.URL.Path == "/ws" || len(req.URL.Path) > 4 && req.URL.Path[:4] == "/ws/":
		ws, err := r.upgrader.Upgrade(w, req, nil)
		if err != nil {
			return
		}
		r.serve(ws)
	default:
		http.NotFound(w, req)
	}
}

type envelope struct {
	Type   string  `json:"type"`
	Action string  `json:"action"`
	UserID string  `json:"user_id"`
	To     *string `json:"to"`
}

func (r *Relay) serve(ws *websocket.Conn) {
	defer ws.Close()
	_, data, err := ws.ReadMessage()
	if err != nil {
		return
	}
	var on envelope
	if json.Unmarshal(data, &on) != nil || on.Type != "online" || on.Action == "" {
		return
	}
	id := "c" + strconv.FormatUint(r.nextID.Add(1), 10)
	if on.UserID == "" {
		on.UserID = id
	}
	c := &conn{ws: ws, action: on.Action, user: on.UserID}
	r.add(c)
	r.conns.Add(1)
	defer func() { r.remove(c); r.conns.Add(-1) }()
	ready, _ := json.Marshal(map[string]string{"type": "ready", "connection_id": id, "user_id": c.user, "action": c.action})
	if c.write(ready) != nil {
		return
	}
	var targets []*conn
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m envelope
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		r.mu.RLock()
		if m.To != nil {
			targets = append(targets[:0], r.users[userKey{c.action, *m.To}]...)
		} else {
			targets = append(targets[:0], r.actions[c.action]...)
		}
		r.mu.RUnlock()
		for _, t := range targets {
			if t != c {
				_ = t.write(data) // a failed peer is cleaned up by its own reader
			}
		}
	}
}

func (c *conn) write(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

func (r *Relay) add(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := userKey{c.action, c.user}
	r.users[k] = append(r.users[k], c)
	r.actions[c.action] = append(r.actions[c.action], c)
}

func (r *Relay) remove(c *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := userKey{c.action, c.user}
	if s := without(r.users[k], c); len(s) > 0 {
		r.users[k] = s
	} else {
		delete(r.users, k)
	}
	if s := without(r.actions[c.action], c); len(s) > 0 {
		r.actions[c.action] = s
	} else {
		delete(r.actions, c.action)
	}
}

// without removes c from s in place (order is not kept). Safe because
// readers copy the slices under the read lock.
func without(s []*conn, c *conn) []*conn {
	for i, x := range s {
		if x == c {
			last := len(s) - 1
			s[i] = s[last]
			s[last] = nil
			return s[:last]
		}
	}
	return s
}
