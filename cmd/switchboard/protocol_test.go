package main

// End-to-end tests of the wire protocol (SPEC sections 1–4 and 8 on one
// node) over real sockets. Messages from one sender keep their order, so a
// "barrier" (a marker broadcast that must be the next thing its receivers
// see) proves that nothing sent before it was delivered, without sleeping.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/routing"
	"github.com/switchboard/switchboard/session"
)

// jsonText marshals v, for building frames in tables.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// dialStatus tries to open a WebSocket on path and returns the HTTP status
// of the answer: 101 when the upgrade succeeded (the socket is then closed).
func (n *testNode) dialStatus(t *testing.T, path string, hdr http.Header) int {
	t.Helper()
	u := "ws" + strings.TrimPrefix(n.url, "http") + path
	ws, resp, err := websocket.DefaultDialer.Dial(u, hdr)
	if err == nil {
		ws.Close()
		return resp.StatusCode
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// connectRaw dials path, sends the frame online and returns the client. The
// caller reads the answer.
func (n *testNode) connectRaw(t *testing.T, path, online string) *client {
	t.Helper()
	c := n.dial(t, path, nil)
	c.sendRaw(online)
	return c
}

// onlineID is like online and also returns the connection id.
func (n *testNode) onlineID(t *testing.T, action, user string) (*client, string) {
	t.Helper()
	c := n.dial(t, "/ws", nil)
	c.name = user
	c.send(map[string]any{"type": "online", "action": action, "user_id": user})
	r := c.expect("ready")
	id, _ := r["connection_id"].(string)
	if r["user_id"] != user || id == "" {
		t.Fatalf("ready = %v, want user %q and a connection id", r, user)
	}
	return c, id
}

// nextRaw returns the next frame as sent, skipping join/leave events.
func (c *client) nextRaw() []byte {
	c.t.Helper()
	for {
		b, err := c.readFrame(5 * time.Second)
		if err != nil {
			c.t.Fatalf("%s: read: %v", c.name, err)
		}
		var m struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("%s: server sent invalid JSON %q: %v", c.name, b, err)
		}
		if m.Type != "join" && m.Type != "leave" {
			return b
		}
	}
}

// ping sends a ping and expects the pong as the next message: the
// connection is open and still served.
func (c *client) ping() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping"})
	c.expect("pong")
}

var markerSeq atomic.Int64

// barrier broadcasts a marker from `from` and checks that it is the next
// message each of to receives. Messages from one sender keep their order,
// so nothing `from` sent before the marker reached them either.
func barrier(t *testing.T, from *client, to ...*client) {
	t.Helper()
	seq := markerSeq.Add(1)
	from.send(map[string]any{"type": "marker", "n": seq})
	for _, c := range to {
		m := c.next()
		if m["type"] != "marker" || m["n"] != float64(seq) {
			t.Fatalf("%s: got %v, want marker %d (a message leaked?)", c.name, m, seq)
		}
	}
}

// objMember is one top-level member of a JSON object, as sent.
type objMember struct {
	key string
	raw string
}

// objectMembers lists the top-level members of the object b, duplicates included.
func objectMembers(t *testing.T, b []byte) []objMember {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q is not an object", b)
	}
	var out []objMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		out = append(out, objMember{tok.(string), string(raw)})
	}
	return out
}

// memberCount returns how many members of ms have key k, and the last one's value.
func memberCount(ms []objMember, k string) (int, string) {
	n, v := 0, ""
	for _, m := range ms {
		if m.key == k {
			n, v = n+1, m.raw
		}
	}
	return n, v
}

// wsURL is the WebSocket URL of path on n.
func (n *testNode) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(n.url, "http") + path
}

func TestOnline(t *testing.T) {
	n := startNode(t)
	long := strings.Repeat("é", 128) // 256 bytes
	tests := []struct {
		name   string
		path   string
		online string
		// On success:
		user   string // "" means the connection id (anonymous)
		action string
		// On refusal:
		code string
	}{
		{name: "user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":"alice"}`, user: "alice", action: "chat"},
		{name: "from is a synonym", path: "/ws", online: `{"type":"online","action":"chat","from":"bob"}`, user: "bob", action: "chat"},
		{name: "user_id wins over from", path: "/ws", online: `{"type":"online","action":"chat","user_id":"carol","from":"dave"}`, user: "carol", action: "chat"},
		{name: "user_id null falls back to from", path: "/ws", online: `{"type":"online","action":"chat","user_id":null,"from":"erin"}`, user: "erin", action: "chat"},
		{name: "anonymous", path: "/ws", online: `{"type":"online","action":"chat"}`, action: "chat"},
		{name: "identity provider ids", path: "/ws", online: jsonText(map[string]string{"type": "online", "action": "a.b:c-d_E9", "user_id": "auth0|5f7c8ec7c33c6c004bbafe82"}), user: "auth0|5f7c8ec7c33c6c004bbafe82", action: "a.b:c-d_E9"},
		{name: "unicode user id of 256 bytes", path: "/ws", online: jsonText(map[string]string{"type": "online", "action": "chat", "user_id": long}), user: long, action: "chat"},
		{name: "action of 64 characters", path: "/ws", online: jsonText(map[string]string{"type": "online", "action": strings.Repeat("a", 64), "user_id": "x"}), user: "x", action: strings.Repeat("a", 64)},
		{name: "escaped keys", path: "/ws", online: `{"type":"online","\u0061ction":"chat","user_id":"fr\u0065d"}`, user: "fred", action: "chat"},
		{name: "token ignored without auth", path: "/ws", online: `{"type":"online","action":"chat","user_id":"tok","token":"not.a.jwt"}`, user: "tok", action: "chat"},
		{name: "non-string token ignored without auth", path: "/ws", online: `{"type":"online","action":"chat","user_id":"tok2","token":123}`, user: "tok2", action: "chat"},
		{name: "preset action", path: "/ws/room-1", online: `{"type":"online","user_id":"alice"}`, user: "alice", action: "room-1"},
		{name: "preset action repeated", path: "/ws/room-1", online: `{"type":"online","action":"room-1","user_id":"alice"}`, user: "alice", action: "room-1"},

		{name: "preset action contradicted", path: "/ws/room-1", online: `{"type":"online","action":"room-2","user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "missing action", path: "/ws", online: `{"type":"online","user_id":"alice"}`, code: routing.CodeMissingAction},
		{name: "null action", path: "/ws", online: `{"type":"online","action":null,"user_id":"alice"}`, code: routing.CodeMissingAction},
		{name: "empty action", path: "/ws", online: `{"type":"online","action":"","user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "action with a space", path: "/ws", online: `{"type":"online","action":"a b","user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "action with a slash", path: "/ws", online: `{"type":"online","action":"a/b","user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "non-ASCII action", path: "/ws", online: `{"type":"online","action":"café","user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "action of 65 characters", path: "/ws", online: jsonText(map[string]string{"type": "online", "action": strings.Repeat("a", 65), "user_id": "x"}), code: routing.CodeInvalidAction},
		{name: "numeric action", path: "/ws", online: `{"type":"online","action":7,"user_id":"alice"}`, code: routing.CodeInvalidAction},
		{name: "numeric user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":42}`, code: routing.CodeInvalidUser},
		{name: "numeric from", path: "/ws", online: `{"type":"online","action":"chat","from":42}`, code: routing.CodeInvalidUser},
		{name: "empty user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":""}`, code: routing.CodeInvalidUser},
		{name: "NUL in user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":"a\u0000b"}`, code: routing.CodeInvalidUser},
		{name: "tab in user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":"a\tb"}`, code: routing.CodeInvalidUser},
		{name: "DEL in user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":"a\u007fb"}`, code: routing.CodeInvalidUser},
		{name: "C1 control in user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":"a\u0085b"}`, code: routing.CodeInvalidUser},
		{name: "user_id of 257 bytes", path: "/ws", online: jsonText(map[string]string{"type": "online", "action": "chat", "user_id": long + "a"}), code: routing.CodeInvalidUser},
		{name: "object user_id", path: "/ws", online: `{"type":"online","action":"chat","user_id":{"id":"alice"}}`, code: routing.CodeInvalidUser},
		{name: "message first", path: "/ws", online: `{"type":"message","action":"chat","user_id":"alice"}`, code: routing.CodeNotOnline},
		{name: "no type", path: "/ws", online: `{"action":"chat","user_id":"alice"}`, code: routing.CodeNotOnline},
		{name: "ping first", path: "/ws", online: `{"type":"ping"}`, code: routing.CodeNotOnline},
		{name: "numeric type", path: "/ws", online: `{"type":1,"action":"chat"}`, code: routing.CodeNotOnline},
		{name: "not JSON", path: "/ws", online: `hello`, code: routing.CodeInvalidJSON},
		{name: "truncated JSON", path: "/ws", online: `{"type":"online","action":"chat"`, code: routing.CodeInvalidJSON},
		{name: "JSON array", path: "/ws", online: `[{"type":"online","action":"chat"}]`, code: routing.CodeInvalidJSON},
		{name: "JSON string", path: "/ws", online: `"online"`, code: routing.CodeInvalidJSON},
		{name: "empty frame", path: "/ws", online: ``, code: routing.CodeInvalidJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := n.connectRaw(t, tc.path, tc.online)
			if tc.code != "" {
				m := c.expectError(tc.code)
				if _, ok := m["id"]; ok {
					t.Errorf("error %v echoes an id", m)
				}
				c.expectClose(websocket.ClosePolicyViolation)
				return
			}
			r := c.expect("ready")
			id, _ := r["connection_id"].(string)
			want := tc.user
			if want == "" {
				want = id
			}
			if id == "" || r["user_id"] != want || r["action"] != tc.action {
				t.Fatalf("ready = %v, want user_id %q, action %q", r, want, tc.action)
			}
			b, err := n.s.store.Get(context.Background(), id)
			if err != nil || b.UserID != want || b.Action != tc.action {
				t.Fatalf("store binding = %+v, %v; want %q in %q", b, err, want, tc.action)
			}
			c.ping()
		})
	}
}

// TestAnonymousAddressable: an anonymous client is addressed by its
// connection id.
func TestAnonymousAddressable(t *testing.T) {
	n := startNode(t)
	anon := n.connectRaw(t, "/ws", `{"type":"online","action":"chat"}`)
	id := anon.expect("ready")["connection_id"].(string)
	a := n.online(t, "chat", "alice")
	a.send(map[string]any{"to": id, "text": "hi", "id": 1})
	if m := anon.expect("message"); m["from"] != "alice" || m["text"] != "hi" {
		t.Fatalf("got %v", m)
	}
	if ack := a.expect("ack"); ack["delivered"] != 1.0 {
		t.Fatalf("ack = %v, want delivered 1", ack)
	}
	anon.send(map[string]any{"to": "alice", "text": "hello"})
	if m := a.expect("message"); m["from"] != id {
		t.Fatalf("got %v, want from %q", m, id)
	}
}

func TestPresetActionHTTP(t *testing.T) {
	n := startNode(t)
	tests := []struct {
		path string
		want int
	}{
		{"/ws/chat", http.StatusSwitchingProtocols},
		{"/ws/A-z_0.9:x", http.StatusSwitchingProtocols},
		{"/ws/" + strings.Repeat("a", 64), http.StatusSwitchingProtocols},
		{"/ws/", http.StatusBadRequest},
		{"/ws/bad!", http.StatusBadRequest},
		{"/ws/a%20b", http.StatusBadRequest},
		{"/ws/a/b", http.StatusBadRequest},
		{"/ws/a%2Fb", http.StatusBadRequest},
		{"/ws/caf%C3%A9", http.StatusBadRequest},
		{"/ws/" + strings.Repeat("a", 65), http.StatusBadRequest},
	}
	for _, tc := range tests {
		if got := n.dialStatus(t, tc.path, nil); got != tc.want {
			t.Errorf("GET %s: status %d, want %d", tc.path, got, tc.want)
		}
	}
}

func TestOnlineBinary(t *testing.T) {
	n := startNode(t)
	c := n.dial(t, "/ws", nil)
	if err := c.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"online","action":"chat"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(routing.CodeBinaryUnsupported)
	c.expectClose(websocket.ClosePolicyViolation)
}

func TestOnlineTimeout(t *testing.T) {
	n := startNode(t, "--online-timeout", "200ms")
	idle := n.dial(t, "/ws", nil)
	prompt := n.online(t, "chat", "alice")
	start := time.Now()
	idle.expectError(routing.CodeOnlineTimeout)
	idle.expectClose(websocket.ClosePolicyViolation)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("online_timeout after %v, want about 200ms", d)
	}
	// A connection that went online in time is not affected.
	prompt.expectNothing(300 * time.Millisecond)
	prompt.ping()
}

func TestAlreadyOnline(t *testing.T) {
	n := startNode(t)
	a, id := n.onlineID(t, "chat", "alice")
	a.send(map[string]any{"type": "online", "action": "other", "user_id": "mallory", "id": "again"})
	if m := a.expectError(routing.CodeAlreadyOnline); m["id"] != "again" {
		t.Errorf("error %v does not echo the id", m)
	}
	a.ping()
	b, err := n.s.store.Get(context.Background(), id)
	if err != nil || b.UserID != "alice" || b.Action != "chat" {
		t.Fatalf("binding = %+v, %v; want alice in chat unchanged", b, err)
	}
}

func TestReservedTypes(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	for _, typ := range []string{"ready", "ack", "error", "join", "leave", "status", "pong", "refreshed"} {
		t.Run(typ, func(t *testing.T) {
			a.send(map[string]any{"type": typ, "id": typ, "user_id": "alice", "code": "x"})
			if m := a.expectError(routing.CodeReservedType); m["id"] != typ {
				t.Errorf("error %v does not echo the id", m)
			}
		})
	}
	barrier(t, a, b)
	a.ping()
}

func TestInvalidJSONAfterReady(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	for _, frame := range []string{`garbage`, `[1,2,3]`, `"a string"`, `42`, `null`, `{"a":}`, `{"a":1}{"b":2}`, `{"type":5}`, `{"type":null}`, ``} {
		t.Run(frame, func(t *testing.T) {
			a.sendRaw(frame)
			a.expectError(routing.CodeInvalidJSON)
			a.ping()
		})
	}
	barrier(t, a, b)
}

func TestBinaryAfterReady(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	if err := a.ws.WriteMessage(websocket.BinaryMessage, []byte(`{"text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	a.expectError(routing.CodeBinaryUnsupported)
	a.ping()
	barrier(t, a, b)
}

func TestInvalidUTF8(t *testing.T) {
	n := startNode(t)
	frame := []byte("{\"type\":\"online\",\"action\":\"chat\",\"user_id\":\"\xff\xfe\"}")
	t.Run("before ready", func(t *testing.T) {
		c := n.dial(t, "/ws", nil)
		if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatal(err)
		}
		c.expectClose(websocket.CloseInvalidFramePayloadData)
	})
	t.Run("after ready", func(t *testing.T) {
		a, id := n.onlineID(t, "chat", "alice")
		b := n.online(t, "chat", "bob")
		if err := a.ws.WriteMessage(websocket.TextMessage, []byte("{\"text\":\"\xc3\x28\"}")); err != nil {
			t.Fatal(err)
		}
		a.expectClose(websocket.CloseInvalidFramePayloadData)
		b.expectEvent("leave", "alice")
		waitFor(t, 5*time.Second, "binding removed", func() bool {
			_, err := n.s.store.Get(context.Background(), id)
			return errors.Is(err, session.ErrNotFound)
		})
	})
}

func TestMessageTooBig(t *testing.T) {
	const limit = 1024
	n := startNode(t, "--max-message-bytes", strconv.Itoa(limit))
	// sized returns a message of exactly size bytes.
	sized := func(size int) string {
		const frame = `{"pad":""}`
		return `{"pad":"` + strings.Repeat("x", size-len(frame)) + `"}`
	}
	t.Run("at the limit", func(t *testing.T) {
		a := n.online(t, "chat", "alice")
		b := n.online(t, "chat", "bob")
		a.sendRaw(sized(limit))
		if m := b.expect("message"); len(m["pad"].(string)) != limit-10 {
			t.Fatalf("pad of %d bytes, want %d", len(m["pad"].(string)), limit-10)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		a := n.online(t, "big", "alice")
		a.sendRaw(sized(limit + 1))
		a.expectClose(websocket.CloseMessageTooBig)
	})
	t.Run("over the limit before ready", func(t *testing.T) {
		c := n.dial(t, "/ws", nil)
		c.sendRaw(`{"type":"online","action":"chat","user_id":"` + strings.Repeat("x", 2*limit) + `"}`)
		c.expectClose(websocket.CloseMessageTooBig)
	})
}

func TestInvalidTo(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	for _, to := range []string{`42`, `null`, `""`, `{"user_id":"bob"}`, `["bob"]`, `true`, `"a\u0000b"`, jsonText(strings.Repeat("b", 257))} {
		t.Run(to, func(t *testing.T) {
			a.sendRaw(`{"text":"leak","to":` + to + `,"id":"x"}`)
			if m := a.expectError(routing.CodeInvalidTo); m["id"] != "x" {
				t.Errorf("error %v does not echo the id", m)
			}
		})
	}
	// Never a broadcast: bob got none of them.
	barrier(t, a, b)
}

func TestInvalidID(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	for _, id := range []string{
		jsonText(strings.Repeat("x", 65)), jsonText(strings.Repeat("é", 65)),
		`1.5`, `1.0`, `1e3`, `9007199254740993`, `-9007199254740993`, `123456789012345678901234567890`,
		`{"n":1}`, `[1]`, `true`, `null`,
	} {
		t.Run(id, func(t *testing.T) {
			a.sendRaw(`{"text":"x","id":` + id + `}`)
			if m := a.expectError(routing.CodeInvalidID); m["id"] != nil {
				t.Errorf("error %v echoes the invalid id", m)
			}
		})
	}
	barrier(t, a, b)
	for _, id := range []string{
		jsonText(strings.Repeat("x", 64)), jsonText(strings.Repeat("é", 64)), `""`, `"\u00e9\n"`,
		`0`, `-1`, `9007199254740992`, `-9007199254740992`,
	} {
		t.Run(id, func(t *testing.T) {
			a.sendRaw(`{"text":"x","id":` + id + `}`)
			got := a.nextRaw()
			if want := `{"type":"ack","id":` + id + `,"delivered":1}`; string(got) != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			b.expect("message")
		})
	}
}

func TestAcks(t *testing.T) {
	n := startNode(t)
	a1 := n.online(t, "chat", "alice")
	a2 := n.online(t, "chat", "alice")
	b1 := n.online(t, "chat", "bob")
	b2 := n.online(t, "chat", "bob")
	c := n.online(t, "chat", "carol")
	lonely := n.online(t, "chat", "dave")
	other := n.online(t, "news", "bob") // bob's device in another action

	tests := []struct {
		name      string
		from      *client
		to        string // "" broadcasts
		delivered float64
		receivers []*client
	}{
		{"broadcast", c, "", 5, []*client{a1, a2, b1, b2, lonely}},
		{"broadcast from a multi-device user", a1, "", 5, []*client{a2, b1, b2, c, lonely}},
		{"direct to a multi-device user", a1, "bob", 2, []*client{b1, b2}},
		{"to yourself with another device", b1, "bob", 1, []*client{b2}},
		{"to yourself without another device", lonely, "dave", 0, nil},
	}
	everyone := []*client{a1, a2, b1, b2, c, lonely}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := map[string]any{"text": tc.name, "id": i}
			if tc.to != "" {
				msg["to"] = tc.to
			}
			tc.from.send(msg)
			ack := tc.from.expect("ack")
			if ack["id"] != float64(i) || ack["delivered"] != tc.delivered {
				t.Fatalf("ack = %v, want id %d delivered %v", ack, i, tc.delivered)
			}
			for _, r := range tc.receivers {
				if m := r.expect("message"); m["text"] != tc.name {
					t.Fatalf("%s got %v", r.name, m)
				}
			}
			// Nobody else got it, the sending connection included.
			var rest []*client
			for _, r := range everyone {
				if r != c && !slices.Contains(tc.receivers, r) {
					rest = append(rest, r)
				}
			}
			barrier(t, c, rest...)
			for _, r := range everyone {
				if r != c && !slices.Contains(rest, r) {
					barrierSeen(t, r)
				}
			}
		})
	}
	other.expectNothing(50 * time.Millisecond)
}

// barrierSeen consumes the last marker on a client that was not checked.
func barrierSeen(t *testing.T, c *client) {
	t.Helper()
	if m := c.next(); m["type"] != "marker" || m["n"] != float64(markerSeq.Load()) {
		t.Fatalf("%s: got %v, want the last marker", c.name, m)
	}
}

func TestUserOffline(t *testing.T) {
	n := startNode(t, "--mailbox=false") // with the mailbox, an offline user's messages are kept
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	n.online(t, "news", "carol") // online, but in another action

	tests := []struct {
		name, frame string
		id, to      any
	}{
		{"unknown user with id", `{"to":"nobody","id":"m1","text":"hi"}`, "m1", "nobody"},
		{"unknown user with integer id", `{"to":"nobody","id":7}`, 7.0, "nobody"},
		{"unknown user without id", `{"to":"nobody"}`, nil, "nobody"},
		{"user in another action", `{"to":"carol","id":"m2"}`, "m2", "carol"},
		{"escaped to is echoed", `{"to":"n\u006fbody","id":"m3"}`, "m3", "nobody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.sendRaw(tc.frame)
			m := a.expectError(routing.CodeUserOffline)
			if m["to"] != tc.to || m["id"] != tc.id {
				t.Fatalf("error %v, want to %v and id %v", m, tc.to, tc.id)
			}
			a.ping() // no ack after the error
		})
	}
	barrier(t, a, b)
}

func TestPresence(t *testing.T) {
	n := startNode(t)
	c := n.online(t, "chat", "carol")
	n.online(t, "chat", "alice")
	n.online(t, "chat", "alice")
	n.online(t, "chat", "bob")
	n.online(t, "news", "dave")
	c.send(map[string]any{"type": "presence", "id": "p"})
	m := c.expect("presence")
	if m["action"] != "chat" || m["id"] != "p" || fmt.Sprint(m["users"]) != "[alice bob carol]" {
		t.Fatalf("presence = %v, want users [alice bob carol] in chat, id p", m)
	}
}

func TestPing(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	a.sendRaw(`{"type":"ping"}`)
	if got := a.nextRaw(); string(got) != `{"type":"pong"}` {
		t.Fatalf("got %s", got)
	}
	a.sendRaw(`{"type":"ping","id":"p1"}`)
	if got := a.nextRaw(); string(got) != `{"type":"pong","id":"p1"}` {
		t.Fatalf("got %s", got)
	}
}

func TestRateLimit(t *testing.T) {
	n := startNode(t, "--rate-limit", "5", "--rate-burst", "5")
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")

	const sent = 20
	for i := range sent {
		a.send(map[string]any{"n": i, "id": i})
	}
	var delivered []float64
	limited := 0
	for range sent {
		m := a.next()
		switch {
		case m["type"] == "ack":
			delivered = append(delivered, m["id"].(float64))
		case m["type"] == "error" && m["code"] == routing.CodeRateLimited && m["id"] != nil:
			limited++
		default:
			t.Fatalf("got %v, want an ack or rate_limited with the id", m)
		}
	}
	if limited == 0 || len(delivered) < 5 {
		t.Fatalf("%d delivered, %d rate limited; want 5 or more and some", len(delivered), limited)
	}
	for _, want := range delivered {
		if m := b.expect("message"); m["n"] != want {
			t.Fatalf("bob got %v, want n %v", m, want)
		}
	}
	// Once a token is back, a marker gets through and is the next thing bob
	// sees: none of the refused messages was delivered.
	seq := markerSeq.Add(1)
	waitFor(t, 5*time.Second, "a token", func() bool {
		a.send(map[string]any{"type": "marker", "n": seq, "id": "marker"})
		return a.next()["type"] == "ack"
	})
	if m := b.next(); m["type"] != "marker" || m["n"] != float64(seq) {
		t.Fatalf("bob got %v, want the marker", m)
	}
}

// TestRateLimitCountsEveryMessage: bad messages, pings and binary frames
// count too (SPEC: "every client message counts").
func TestRateLimitCountsEveryMessage(t *testing.T) {
	n := startNode(t, "--rate-limit", "1", "--rate-burst", "3")
	frames := []struct {
		name string
		send func(*client)
		code string // the answer while tokens last ("" = pong)
	}{
		{"invalid JSON", func(c *client) { c.sendRaw("garbage") }, routing.CodeInvalidJSON},
		{"invalid id", func(c *client) { c.sendRaw(`{"id":1.5}`) }, routing.CodeInvalidID},
		{"ping", func(c *client) { c.sendRaw(`{"type":"ping"}`) }, ""},
		{"binary", func(c *client) { _ = c.ws.WriteMessage(websocket.BinaryMessage, []byte("x")) }, routing.CodeBinaryUnsupported},
	}
	for _, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			a := n.online(t, "chat", "alice")
			for range 10 {
				f.send(a)
			}
			limited := 0
			for range 10 {
				m := a.next()
				switch {
				case m["type"] == "error" && m["code"] == routing.CodeRateLimited:
					limited++
				case f.code == "" && m["type"] == "pong":
				case m["type"] == "error" && m["code"] == f.code:
				default:
					t.Fatalf("got %v", m)
				}
			}
			if limited < 5 {
				t.Fatalf("%d of 10 rate limited, want at least 5 (burst 3, 1/s)", limited)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	origin := func(o string) http.Header {
		if o == "" {
			return nil
		}
		return http.Header{"Origin": {o}}
	}
	t.Run("default", func(t *testing.T) {
		n := startNode(t)
		tests := []struct {
			origin string
			want   int
		}{
			{"", http.StatusSwitchingProtocols},
			{n.url, http.StatusSwitchingProtocols},
			{"https://" + strings.TrimPrefix(n.url, "http://"), http.StatusSwitchingProtocols},
			{"http://evil.example", http.StatusForbidden},
			{"http://127.0.0.1:1", http.StatusForbidden},
			{"null", http.StatusForbidden},
		}
		for _, tc := range tests {
			if got := n.dialStatus(t, "/ws", origin(tc.origin)); got != tc.want {
				t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
			}
		}
	})
	t.Run("allowed origins", func(t *testing.T) {
		n := startNode(t, "--allowed-origins", "http://app.example, https://other.example:8443")
		tests := []struct {
			origin string
			want   int
		}{
			{"http://app.example", http.StatusSwitchingProtocols},
			{"HTTP://APP.EXAMPLE", http.StatusSwitchingProtocols},
			{"https://other.example:8443", http.StatusSwitchingProtocols},
			{n.url, http.StatusSwitchingProtocols},
			{"", http.StatusSwitchingProtocols},
			{"https://app.example", http.StatusForbidden},
			{"http://app.example:8080", http.StatusForbidden},
			{"http://evil.example", http.StatusForbidden},
		}
		for _, tc := range tests {
			if got := n.dialStatus(t, "/ws/chat", origin(tc.origin)); got != tc.want {
				t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
			}
		}
	})
}

func TestBroadcastIsolation(t *testing.T) {
	n := startNode(t)
	a1 := n.online(t, "chat", "alice")
	a2 := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	nb := n.online(t, "news", "bob")
	nc := n.online(t, "news", "carol")

	a1.send(map[string]any{"text": "hello chat", "id": 1})
	if ack := a1.expect("ack"); ack["delivered"] != 2.0 {
		t.Fatalf("ack = %v, want delivered 2", ack)
	}
	for _, c := range []*client{a2, b} { // the sender's other device gets it
		if m := c.expect("message"); m["text"] != "hello chat" || m["from"] != "alice" || m["action"] != "chat" {
			t.Fatalf("%s got %v", c.name, m)
		}
	}
	barrier(t, b, a1, a2) // not back to the sending connection
	barrier(t, nc, nb)    // and not to another action, even to the same user
}

func TestDirect(t *testing.T) {
	n := startNode(t)
	a1 := n.online(t, "chat", "alice")
	a2 := n.online(t, "chat", "alice")
	b1 := n.online(t, "chat", "bob")
	b2 := n.online(t, "chat", "bob")
	c := n.online(t, "chat", "carol")
	na := n.online(t, "news", "alice") // alice in another action

	b1.send(map[string]any{"to": "alice", "text": "psst", "id": "d"})
	for _, r := range []*client{a1, a2} {
		if m := r.expect("message"); m["text"] != "psst" || m["from"] != "bob" || m["to"] != "alice" {
			t.Fatalf("%s got %v", r.name, m)
		}
	}
	if ack := b1.expect("ack"); ack["delivered"] != 2.0 || ack["id"] != "d" {
		t.Fatalf("ack = %v, want delivered 2", ack)
	}
	barrier(t, b1, b2, c, a1, a2)
	na.expectNothing(50 * time.Millisecond)
}

func TestStamping(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")

	tests := []struct {
		name  string
		frame string
		typ   string      // expected type
		kept  []objMember // members delivered exactly as sent
	}{
		{
			name:  "spoofed from, action and ts",
			frame: `{"from":"mallory","action":"admin","ts":1,"text":"hi"}`,
			typ:   `"message"`,
			kept:  []objMember{{"text", `"hi"`}},
		},
		{
			name:  "spoofed with escaped keys",
			frame: `{"fr\u006fm":"mallory","\u0061ction":"admin","t\u0073":1,"text":"hi"}`,
			typ:   `"message"`,
			kept:  []objMember{{"text", `"hi"`}},
		},
		{
			name:  "spoofed in another case",
			frame: `{"From":"mallory","ACTION":"admin","Ts":1,"text":"hi"}`,
			typ:   `"message"`,
			kept:  []objMember{{"text", `"hi"`}},
		},
		{
			name:  "other fields kept as sent",
			frame: `{ "nested" : {"from":"x","a":[1,{"b":null}]} , "text":"héllo ✓ 🎉 \u00e9\"","n":1.5e3,"big":123456789012345678901234567890,"f":false,"z":null,"arr":[ ] }`,
			typ:   `"message"`,
			kept: []objMember{
				{"nested", `{"from":"x","a":[1,{"b":null}]}`},
				{"text", `"héllo ✓ 🎉 \u00e9\""`},
				{"n", `1.5e3`},
				{"big", `123456789012345678901234567890`},
				{"f", `false`},
				{"z", `null`},
				{"arr", `[ ]`},
			},
		},
		{
			name:  "message type kept",
			frame: `{"type":"message","text":"hi"}`,
			typ:   `"message"`,
			kept:  []objMember{{"text", `"hi"`}},
		},
		{
			name:  "custom type kept",
			frame: `{"type":"typing","state":true}`,
			typ:   `"typing"`,
			kept:  []objMember{{"state", `true`}},
		},
		{
			name:  "empty object",
			frame: `{}`,
			typ:   `"message"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().UnixMilli()
			a.sendRaw(tc.frame)
			raw := b.nextRaw()
			after := time.Now().UnixMilli()
			if bytes.Contains(raw, []byte("mallory")) || bytes.Contains(raw, []byte("admin")) {
				t.Fatalf("spoofed value delivered: %s", raw)
			}
			ms := objectMembers(t, raw)
			for _, want := range []objMember{{"from", `"alice"`}, {"action", `"chat"`}, {"type", tc.typ}} {
				if n, v := memberCount(ms, want.key); n != 1 || v != want.raw {
					t.Errorf("%s: %d %q members, last %s; want exactly one %s", raw, n, want.key, v, want.raw)
				}
			}
			n, ts := memberCount(ms, "ts")
			got, err := strconv.ParseInt(ts, 10, 64)
			if n != 1 || err != nil || got < before || got > after {
				t.Errorf("%s: ts %s, want one in [%d, %d]", raw, ts, before, after)
			}
			for _, m := range ms {
				if strings.EqualFold(m.key, "from") || strings.EqualFold(m.key, "action") || strings.EqualFold(m.key, "ts") || strings.EqualFold(m.key, "type") {
					if m.key != strings.ToLower(m.key) {
						t.Errorf("%s: objMember %q kept; a case-insensitive decoder would take it for %s", raw, m.key, strings.ToLower(m.key))
					}
				}
			}
			for _, want := range tc.kept {
				if n, v := memberCount(ms, want.key); n != 1 || v != want.raw {
					t.Errorf("%s: objMember %q = %s (%d times), want %s as sent", raw, want.key, v, n, want.raw)
				}
			}
			if wantN := 4 + len(tc.kept); len(ms) != wantN {
				t.Errorf("%s: %d members, want %d", raw, len(ms), wantN)
			}
		})
	}
}

func TestOrder(t *testing.T) {
	const count = 500 // of each kind: 1,000 messages in all
	// alice sends as fast as the socket takes it: the rate limit must not
	// refuse any, and the default outbound backlog must absorb the burst
	// while the writer lags behind the reader (docs/protocol.md, "Slow
	// consumers").
	n := startNode(t, "--rate-limit", "100000", "--rate-burst", "100000")
	a := n.online(t, "chat", "alice")
	b1 := n.online(t, "chat", "bob")
	b2 := n.online(t, "chat", "bob")
	c := n.online(t, "chat", "carol")

	// alice sends count direct messages to bob and count broadcasts,
	// interleaved; each receiver reads on its own goroutine meanwhile and
	// checks that each stream arrives complete and in order.
	errs := make(chan error, 3)
	receive := func(r *client, streams int) {
		errs <- func() error {
			next := map[bool]int{} // direct? → next n expected
			for next[true]+next[false] < streams*count {
				b, err := r.readFrame(10 * time.Second)
				if err != nil {
					return fmt.Errorf("%s after %v: %w", r.name, next, err)
				}
				var m struct {
					Type, From, To string
					N              *int
				}
				if err := json.Unmarshal(b, &m); err != nil {
					return err
				}
				if m.Type == "join" || m.Type == "leave" {
					continue
				}
				direct := m.To == "bob"
				if m.Type != "message" || m.From != "alice" || m.N == nil || *m.N != next[direct] {
					return fmt.Errorf("%s: got %+v, want n %d (direct %v)", r.name, m, next[direct], direct)
				}
				next[direct]++
			}
			return nil
		}()
	}
	go receive(b1, 2)
	go receive(b2, 2)
	go receive(c, 1)
	for i := range count {
		if err := a.ws.WriteJSON(map[string]any{"to": "bob", "n": i}); err != nil {
			t.Fatal(err)
		}
		if err := a.ws.WriteJSON(map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestManyClients(t *testing.T) {
	const clients = 200
	// Every client gets a join for each one that comes after it, in a burst
	// as they all connect at once: the default outbound backlog must hold
	// them (docs/protocol.md, "Slow consumers").
	n := startNode(t, "--rate-burst", "1000")
	sender := n.online(t, "chat", "sender")

	online := make(chan struct{}, clients)
	errs := make(chan error, clients)
	// The clients stay connected until every one has its message: a client
	// leaving early would add a leave event for all the others.
	finish := make(chan struct{})
	defer close(finish)
	for i := range clients {
		go func() {
			user := fmt.Sprintf("user-%03d", i)
			ws, _, err := websocket.DefaultDialer.Dial(n.wsURL("/ws/chat"), nil)
			if err != nil {
				errs <- err
				return
			}
			defer ws.Close()
			errs <- func() error {
				if err := ws.WriteJSON(map[string]any{"type": "online", "user_id": user}); err != nil {
					return err
				}
				for {
					_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
					var m map[string]any
					if err := ws.ReadJSON(&m); err != nil {
						return fmt.Errorf("%s: %w", user, err)
					}
					switch m["type"] {
					case "ready":
						online <- struct{}{}
					case "join":
					case "message":
						if m["to"] != user || m["text"] != "for "+user || m["from"] != "sender" {
							return fmt.Errorf("%s got %v", user, m)
						}
						return nil
					default:
						return fmt.Errorf("%s got %v", user, m)
					}
				}
			}()
			<-finish
		}()
	}
	for range clients {
		select {
		case <-online:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	for range clients {
		if m, err := sender.read(10 * time.Second); err != nil || m["type"] != "join" {
			t.Fatalf("sender: got %v, %v; want a join", m, err)
		}
	}
	for i := range clients {
		user := fmt.Sprintf("user-%03d", i)
		sender.send(map[string]any{"to": user, "text": "for " + user, "id": i})
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i := range clients {
		if ack := sender.expect("ack"); ack["id"] != float64(i) || ack["delivered"] != 1.0 {
			t.Fatalf("ack %v, want id %d delivered 1", ack, i)
		}
	}
}

// strictBarrier is barrier without skipping join/leave events: the marker
// must be the very next frame.
func strictBarrier(t *testing.T, from *client, to ...*client) {
	t.Helper()
	seq := markerSeq.Add(1)
	from.send(map[string]any{"type": "marker", "n": seq})
	for _, c := range to {
		m, err := c.read(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if m["type"] != "marker" || m["n"] != float64(seq) {
			t.Fatalf("%s: got %v, want marker %d", c.name, m, seq)
		}
	}
}

// waitUnbound waits until connection id has no binding in n's store.
func waitUnbound(t *testing.T, n *testNode, id string) {
	t.Helper()
	waitFor(t, 5*time.Second, "binding of "+id+" removed", func() bool {
		_, err := n.s.store.Get(context.Background(), id)
		return errors.Is(err, session.ErrNotFound)
	})
}

func TestJoinLeave(t *testing.T) {
	n := startNode(t)
	b := n.online(t, "chat", "bob")
	nora := n.online(t, "news", "nora")

	a1, id1 := n.onlineID(t, "chat", "alice")
	b.expectEvent("join", "alice")
	a2, id2 := n.onlineID(t, "chat", "alice")
	strictBarrier(t, a1, b, a2) // a second device: no join

	a2.ws.Close()
	waitUnbound(t, n, id2)
	strictBarrier(t, a1, b) // one of two devices closed: no leave

	a1.ws.Close()
	b.expectEvent("leave", "alice") // the last one closed
	waitUnbound(t, n, id1)

	// Events stay in their action: nora saw none of the above, and alice's
	// first connection in news is a join there.
	n.online(t, "news", "alice")
	nora.expectEvent("join", "alice")
	b.expectNothing(50 * time.Millisecond)
}

func TestPresenceEventsOff(t *testing.T) {
	n := startNode(t, "--presence-events=false")
	b := n.online(t, "chat", "bob")
	a, id := n.onlineID(t, "chat", "alice")
	a.ws.Close()
	waitUnbound(t, n, id)
	strictBarrier(t, n.online(t, "chat", "carol"), b) // no join, no leave
}

func TestBindingsRemovedOnClose(t *testing.T) {
	n := startNode(t, "--mailbox=false") // user_offline shows the bindings are gone
	ctx := context.Background()
	tests := []struct {
		name  string
		close func(*client)
	}{
		{"close frame", func(c *client) {
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
			c.expectClose(websocket.CloseNormalClosure)
		}},
		{"vanished without a close frame", func(c *client) { c.ws.UnderlyingConn().Close() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := n.online(t, "chat", "observer")
			a, id := n.onlineID(t, "chat", "alice")
			obs.expectEvent("join", "alice")
			tc.close(a)
			obs.expectEvent("leave", "alice")
			if _, err := n.s.store.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("Get(%s) = %v after the leave, want ErrNotFound", id, err)
			}
			if bs, err := n.s.store.UserBindings(ctx, "alice"); err != nil || len(bs) != 0 {
				t.Errorf("alice's bindings = %v, %v; want none", bs, err)
			}
			obs.send(map[string]any{"type": "presence"})
			if m := obs.expect("presence"); fmt.Sprint(m["users"]) != "[observer]" {
				t.Errorf("presence = %v, want only the observer", m)
			}
			obs.send(map[string]any{"to": "alice", "id": 1})
			obs.expectError(routing.CodeUserOffline)
			obs.ws.Close()
			waitFor(t, 5*time.Second, "the observer's binding removed", func() bool {
				users, err := n.s.store.ActionUsers(ctx, "chat")
				return err == nil && len(users) == 0
			})
		})
	}
}

// expectCloseText reads until the connection closes and checks code and text.
func (c *client) expectCloseText(code int, text string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.readFrame(time.Until(deadline))
		if err == nil {
			continue
		}
		checkClose(c.t, c.name, err, code, text)
		return
	}
}

// checkClose checks that err is a close frame with code and text.
func checkClose(t testing.TB, name string, err error, code int, text string) {
	t.Helper()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != code || ce.Text != text {
		t.Fatalf("%s: got %v, want close %d %q", name, err, code, text)
	}
}

func TestSlowConsumer(t *testing.T) {
	n := startNode(t, "--outbound-queue", "32", "--rate-limit", "100000", "--rate-burst", "100000",
		"--outbound-buffer-bytes", "262144", "--outbound-stall", "300ms")
	// slow never reads: once the socket buffers between it and the server
	// are full, the server's writes to it back up. (Shrinking its receive
	// buffer would be quicker, but a buffer below loopback's MSS stalls TCP
	// itself: the window never reopens.)
	slow, _, err := websocket.DefaultDialer.Dial(n.wsURL("/ws/chat"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Close() })
	var ready struct {
		ConnectionID string `json:"connection_id"`
	}
	if err := slow.WriteJSON(map[string]any{"type": "online", "user_id": "slow"}); err != nil {
		t.Fatal(err)
	}
	if err := slow.ReadJSON(&ready); err != nil || ready.ConnectionID == "" {
		t.Fatalf("ready = %+v, %v", ready, err)
	}
	flooder := n.online(t, "chat", "flooder")
	other := n.online(t, "chat", "other")

	// The flooder broadcasts until the server has found slow a slow
	// consumer (however long the socket buffers take to fill), waiting for
	// each ack, so the server's writer to other keeps up; other reads
	// everything, in order, while slow is stuck.
	payload := strings.Repeat("x", 60<<10)
	sent := 0
	deadline := time.Now().Add(60 * time.Second)
	for scrapeMetrics(t, n).get(t, "switchboard_slow_consumers_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("slow not found a slow consumer after %d messages", sent)
		}
		for range 10 {
			flooder.send(map[string]any{"n": sent, "p": payload, "id": sent})
			flooder.expect("ack")
			sent++
		}
	}
	for i := 0; i < sent; {
		b, err := other.readFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("other after %d messages: %v", i, err)
		}
		var m struct {
			Type string
			N    int
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "join" || m.Type == "leave" {
			continue
		}
		if m.N != i {
			t.Fatalf("other: got n %d, want %d", m.N, i)
		}
		i++
	}
	// slow reads what the server managed to send, then the close frame
	// (written as soon as the socket takes it, within WriteWait).
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := 0
	for {
		if _, _, err = slow.ReadMessage(); err != nil {
			break
		}
		got++
	}
	t.Logf("slow read %d of %d frames, then %v", got, sent, err)
	checkClose(t, "slow", err, websocket.ClosePolicyViolation, "slow consumer")
	waitUnbound(t, n, ready.ConnectionID)
	other.ping()
	flooder.ping()
}

// TestReaderNotEvictedByBursts: two senders each send one in-limit burst
// (RATE_BURST messages of 10-30 KB) to a reader that reads in a tight loop:
// the reader's backlog grows far past OUTBOUND_BUFFER_BYTES, but its socket
// keeps taking frames, so it is never a slow consumer and gets everything,
// in order.
func TestReaderNotEvictedByBursts(t *testing.T) {
	n := startNode(t, "--outbound-buffer-bytes", "262144")
	reader := n.online(t, "chat", "reader")
	senders := []*client{n.online(t, "chat", "s0"), n.online(t, "chat", "s1")}
	const burst = 200 // RATE_BURST's default
	errs := make(chan error, len(senders))
	for si, s := range senders {
		go func() {
			for i := range burst {
				size := 10000 + (i*7919)%20000
				b, _ := json.Marshal(map[string]any{"to": "reader", "n": i, "s": si, "p": strings.Repeat("y", size)})
				if err := s.ws.WriteMessage(websocket.TextMessage, b); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	next := make([]int, len(senders))
	for got := 0; got < burst*len(senders); got++ {
		b, err := reader.readFrame(30 * time.Second)
		if err != nil {
			t.Fatalf("reader after %d messages: %v", got, err)
		}
		var m struct {
			Type string
			N, S int
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type == "join" || m.Type == "leave" {
			got--
			continue
		}
		if m.N != next[m.S] {
			t.Fatalf("from s%d: got n %d, want %d", m.S, m.N, next[m.S])
		}
		next[m.S]++
	}
	if v := scrapeMetrics(t, n).get(t, "switchboard_slow_consumers_total"); v != 0 {
		t.Fatalf("%v slow consumers, want none", v)
	}
	reader.ping()
}

func TestShutdownCloses1001(t *testing.T) {
	n := startNode(t)
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	c := n.online(t, "news", "carol")
	idle := n.dial(t, "/ws", nil) // not online yet
	n.stop()
	for _, cl := range []*client{a, b, c, idle} {
		cl.expectCloseText(websocket.CloseGoingAway, "server shutting down")
	}
	ctx := context.Background()
	for _, action := range []string{"chat", "news"} {
		if users, err := n.s.store.ActionUsers(ctx, action); err != nil || len(users) != 0 {
			t.Errorf("%s after shutdown: %v, %v; want no bindings", action, users, err)
		}
	}
	if _, err := n.tryDial("/ws", nil); err == nil {
		t.Error("dial after shutdown succeeded")
	}
}

func TestCustomHandlers(t *testing.T) {
	n := startNode(t)
	r := n.s.router
	nop := func(context.Context, *routing.Request) error { return nil }
	for _, typ := range []string{"", "ready", "ack", "error", "join", "leave", "status", "pong", "refreshed", "online", "presence", "ping", "refresh", "message"} {
		if err := r.Handle(typ, nop); err == nil {
			t.Errorf("Handle(%q) succeeded, want it refused", typ)
		}
	}
	// typing delivers like a message and replies with the count.
	err := r.Handle("typing", func(ctx context.Context, req *routing.Request) error {
		n, err := req.Deliver(ctx)
		if err != nil {
			return err
		}
		return req.Reply(map[string]any{"type": "typing_sent", "delivered": n, "user": req.Conn.UserID(), "action": req.Conn.Action()})
	})
	if err != nil {
		t.Fatal(err)
	}
	// receipt refuses with a code of its own.
	if err := r.Handle("receipt", func(context.Context, *routing.Request) error {
		return &routing.Error{Code: "read_disabled", Message: "read receipts are off"}
	}); err != nil {
		t.Fatal(err)
	}
	// odd refuses with a code that needs escaping in JSON.
	if err := r.Handle("odd", func(context.Context, *routing.Request) error {
		return &routing.Error{Code: `odd "code"`, Message: "odd\nmessage"}
	}); err != nil {
		t.Fatal(err)
	}
	// boom fails: the client sees internal, never the error's text.
	if err := r.Handle("boom", func(context.Context, *routing.Request) error {
		return errors.New("db password hunter2 rejected")
	}); err != nil {
		t.Fatal(err)
	}

	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	c := n.online(t, "chat", "carol")

	a.send(map[string]any{"type": "typing", "to": "bob", "id": "t1", "from": "mallory"})
	if m := b.expect("typing"); m["from"] != "alice" || m["action"] != "chat" || m["id"] != "t1" || m["ts"] == nil {
		t.Fatalf("bob got %v, want a stamped typing from alice", m)
	}
	if m := a.expect("typing_sent"); m["delivered"] != 1.0 || m["user"] != "alice" || m["action"] != "chat" {
		t.Fatalf("reply %v", m)
	}
	a.send(map[string]any{"type": "typing"})
	b.expect("typing")
	c.expect("typing")
	if m := a.expect("typing_sent"); m["delivered"] != 2.0 {
		t.Fatalf("reply %v, want delivered 2", m)
	}

	a.send(map[string]any{"type": "typing", "to": 5, "id": 9})
	if m := a.expectError(routing.CodeInvalidTo); m["id"] != 9.0 {
		t.Fatalf("error %v does not echo the id", m)
	}
	a.send(map[string]any{"type": "receipt", "id": "r1"})
	if m := a.expectError("read_disabled"); m["message"] != "read receipts are off" || m["id"] != "r1" {
		t.Fatalf("error %v", m)
	}
	a.send(map[string]any{"type": "odd"})
	if m := a.expectError(`odd "code"`); m["message"] != "odd\nmessage" {
		t.Fatalf("error %v", m)
	}
	a.send(map[string]any{"type": "boom", "id": 3})
	if m := a.expectError(routing.CodeInternal); m["id"] != 3.0 || strings.Contains(fmt.Sprint(m), "hunter2") {
		t.Fatalf("error %v", m)
	}
	a.send(map[string]any{"type": "ready"})
	a.expectError(routing.CodeReservedType)
	barrier(t, a, b, c) // refused messages reached nobody
}

// TestNoCompression: per-message compression is never negotiated (a small
// compressed frame could inflate past every limit).
func TestNoCompression(t *testing.T) {
	n := startNode(t)
	d := websocket.Dialer{EnableCompression: true}
	ws, resp, err := d.Dial(n.wsURL("/ws/chat"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("server negotiated %q", ext)
	}
}

// TestPresenceEventsLimit: join/leave go out only while the action has at
// most PRESENCE_EVENTS_LIMIT users; presence works beyond it.
func TestPresenceEventsLimit(t *testing.T) {
	n := startNode(t, "--presence-events-limit", "2")
	a := n.online(t, "chat", "alice")
	b := n.online(t, "chat", "bob")
	a.expectEvent("join", "bob")
	c := n.online(t, "chat", "carol")  // three users now: no join
	a2 := n.online(t, "chat", "alice") // alice's second device: never a join
	a.send(map[string]any{"type": "presence"})
	// The presence reply is the next frame: no join of carol came before it.
	if m, err := a.read(5 * time.Second); err != nil || m["type"] != "presence" || fmt.Sprint(m["users"]) != "[alice bob carol]" {
		t.Fatalf("got %v (%v), want presence of three users and no join before it", m, err)
	}
	c.ws.Close()
	b.expectEventWithin("leave", "carol", 5*time.Second) // two users again: events resume
	a2.expectEventWithin("leave", "carol", 5*time.Second)
}

// Many senders to one reader through a one-frame writer queue: every frame
// goes through the backlog's hand-over between writers and the socket
// writer, which must never strand a frame (a stranded one stalls the
// connection until it is closed as a slow consumer).
func TestOutboundBacklogUnderContention(t *testing.T) {
	n := startNode(t, "--outbound-queue", "1", "--rate-limit", "1000000", "--rate-burst", "1000000")
	const senders, each = 16, 600
	rcv := n.online(t, "load", "rcv")
	var ss []*client
	for i := range senders {
		ss = append(ss, n.online(t, "load", fmt.Sprintf("s%d", i)))
	}
	rcv.drain() // join events
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := s.ws.WriteJSON(map[string]any{"to": "rcv", "s": i, "n": j}); err != nil {
					t.Errorf("s%d: %v", i, err)
					return
				}
			}
		}()
	}
	next := make([]int, senders)
	for got := 0; got < senders*each; {
		b, err := rcv.readFrame(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", got, senders*each, err)
		}
		var m struct {
			Type string
			S, N int
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != "" && m.Type != "message" {
			continue // presence
		}
		if m.N != next[m.S] {
			t.Fatalf("from s%d: got n %d, want %d (per-sender order)", m.S, m.N, next[m.S])
		}
		next[m.S]++
		got++
	}
	wg.Wait()
}
