package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// specCodes are the error codes SPEC section 4 allows.
var specCodes = map[string]bool{
	CodeMissingAction: true, CodeInvalidAction: true, CodeInvalidUser: true, CodeNotOnline: true,
	CodeOnlineTimeout: true, CodeAlreadyOnline: true, CodeUnauthorized: true, CodeUserMismatch: true,
	CodeTokenExpired: true, CodeInvalidJSON: true, CodeBinaryUnsupported: true, CodeInvalidTo: true,
	CodeInvalidID: true, CodeUserOffline: true, CodeReservedType: true, CodeRateLimited: true,
	CodeUnavailable: true, "too_many_connections": true, "banned": true, CodeInternal: true,
}

// FuzzSequence sends a sequence of frames (the input split at newlines,
// optionally after a valid online) into one connection of a Router with a
// memory store, and checks: the server never panics; every frame it sends
// is a JSON object, every error a code of SPEC section 4; a close uses a
// code the protocol documents; and another connection of the action is
// unaffected: it still gets answers, and whatever it received from the
// fuzzed connection is stamped with that connection's user. Run with
//
//	go test -fuzz FuzzSequence -fuzztime 60s ./routing
func FuzzSequence(f *testing.F) {
	for _, s := range []struct {
		online bool
		frames string
	}{
		{false, `{"type":"online","action":"chat","user_id":"m"}` + "\n" + `{"text":"hi"}`},
		{true, `{"to":"watcher","id":1,"text":"x"}` + "\n" + `{"type":"presence"}`},
		{true, `{"To":"watcher"}` + "\n" + `{"type":"join","type":"message"}` + "\n" + `[1]`},
		{true, `{"type":"online","action":"chat"}` + "\n" + `{"type":"ack"}` + "\n" + `{"id":1e99}`},
		{true, `{"type":"refresh","token":"x"}` + "\n" + `{"to":""}` + "\n" + "{\"a\":\"\xff\"}"},
		{false, `{"type":"online","action":"bad action!"}`},
		{true, `{"type":"ping","id":"p"}` + "\n" + `{"from":"watcher","action":"other","ts":1}`},
		{true, strings.Repeat("x", 5000)},
	} {
		f.Add(s.online, []byte(s.frames))
	}
	_, url := newFuzzNode(f)
	watcher, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		f.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.WriteJSON(map[string]string{"type": "online", "user_id": "watcher"}); err != nil {
		f.Fatal(err)
	}
	w := newFuzzReader(watcher)
	if m := w.next(f, 10*time.Second); m["type"] != "ready" {
		f.Fatalf("watcher: got %v, want ready", m)
	}
	f.Fuzz(func(t *testing.T, online bool, data []byte) {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		frames := bytes.Split(data, []byte("\n"))
		if len(frames) > 20 {
			frames = frames[:20]
		}
		if online {
			frames = append([][]byte{[]byte(`{"type":"online","user_id":"fuzz"}`)}, frames...)
		}
		for _, fr := range frames {
			if ws.WriteMessage(websocket.TextMessage, fr) != nil {
				break // closed by the server
			}
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"end"}`))
		user := "fuzz"
		for {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					switch ce.Code {
					case websocket.CloseNormalClosure, websocket.CloseInvalidFramePayloadData,
						websocket.ClosePolicyViolation, websocket.CloseMessageTooBig, websocket.CloseTryAgainLater:
					default:
						t.Fatalf("close %d %q", ce.Code, ce.Text)
					}
					break
				}
				t.Fatalf("read: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("server sent %q: not a JSON object", b)
			}
			if m["type"] == "error" {
				if code, _ := m["code"].(string); !specCodes[code] {
					t.Fatalf("error %q is not a code of the spec", b)
				}
			}
			if m["type"] == "ready" {
				user, _ = m["user_id"].(string)
			}
			if m["type"] == "pong" && m["id"] == "end" {
				break
			}
		}
		ws.Close()
		// The watcher is unaffected: what it got from the fuzzed
		// connection is stamped with its user, and it is answered.
		if err := watcher.WriteJSON(map[string]string{"type": "ping", "id": "w"}); err != nil {
			t.Fatal(err)
		}
		for {
			m := w.next(t, 10*time.Second)
			if m["type"] == "pong" && m["id"] == "w" {
				break
			}
			switch m["type"] {
			case "join", "leave":
				continue
			}
			if from, ok := m["from"]; ok && from != user && from != "watcher" {
				t.Fatalf("watcher got %v: from is not the sender %q", m, user)
			}
			if m["type"] == "error" || m["type"] == "ready" || m["action"] != "chat" {
				t.Fatalf("watcher got %v", m)
			}
		}
	})
}

// newFuzzNode runs a Router for a fuzz target, stopped when it ends.
func newFuzzNode(f *testing.F) (*Router, string) {
	f.Helper()
	return newConnTestNode(f, Config{Node: "fuzz", RateLimit: 1e9, RateBurst: 1 << 30, MaxMessageBytes: 4096})
}

// fuzzReader reads a WebSocket on its own goroutine, so that reads can
// time out without breaking the connection.
type fuzzReader struct {
	in chan map[string]any
}

func newFuzzReader(ws *websocket.Conn) *fuzzReader {
	fr := &fuzzReader{in: make(chan map[string]any, 1<<16)}
	go func() {
		defer close(fr.in)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) != nil {
				m = map[string]any{"type": "invalid", "raw": string(b)}
			}
			fr.in <- m
		}
	}()
	return fr
}

func (fr *fuzzReader) next(t testing.TB, d time.Duration) map[string]any {
	t.Helper()
	select {
	case m, ok := <-fr.in:
		if !ok {
			t.Fatal("watcher closed")
		}
		return m
	case <-time.After(d):
		t.Fatal("watcher: nothing within", d)
		return nil
	}
}
