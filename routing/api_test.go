package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard/switchboard/session"
)

func TestAPIMessage(t *testing.T) {
	for _, tc := range []struct {
		name, action, to, in, want string
	}{
		{"plain", "chat", "", `{"text":"hi"}`, `{"action":"chat","ts":42,"text":"hi","type":"message"}`},
		{"type kept", "chat", "", `{"type":"notice","text":"hi"}`, `{"action":"chat","ts":42,"type":"notice","text":"hi"}`},
		{"server fields dropped", "chat", "", `{"from":"mallory","action":"x","ts":1,"to":"y","a":1}`, `{"action":"chat","ts":42,"a":1,"type":"message"}`},
		{"case variants dropped", "chat", "", `{"From":"m","ACTION":"x","Ts":1,"text":"hi"}`, `{"action":"chat","ts":42,"text":"hi","type":"message"}`},
		{"escaped keys dropped", "chat", "", `{"fr\u006fm":"mallory","a":[1,{"from":2}]}`, `{"action":"chat","ts":42,"a":[1,{"from":2}],"type":"message"}`},
		{"to set", "chat", "bob", `{"to":"bob","text":"hi"}`, `{"action":"chat","ts":42,"to":"bob","text":"hi","type":"message"}`},
		{"whitespace", "a.b:c-d_e", "", " {\n\"x\" : true ,\"y\":null}\n", `{"action":"a.b:c-d_e","ts":42,"x":true,"y":null,"type":"message"}`},
		{"empty object", "chat", "", `{}`, `{"action":"chat","ts":42,"type":"message"}`},
		{"user with quotes", "chat", `"q"\`, `{}`, `{"action":"chat","ts":42,"to":"\"q\"\\","type":"message"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apiMessage(tc.action, tc.to, []byte(tc.in), 42)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON %s", got)
			}
			if deliveryKind(&Envelope{Kind: KindMessage, Payload: got}) != deliveryAPI {
				t.Fatalf("deliveryKind of %s is not api", got)
			}
		})
	}
	for _, in := range []string{``, `[]`, `"x"`, `{"a":1`, `{"a":1}{}`, "{\"a\":\"\xff\"}", `{"type":3}`, `{"type":"ack"}`, `{"type":"error"}`,
		`{"type":"t","Type":"error"}`, `{"TO":"y"}`, `{"a":1,"a":2}`} {
		if _, err := apiMessage("chat", "", []byte(in), 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("apiMessage(%q): got %v, want ErrInvalid", in, err)
		}
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestDeliveryKind(t *testing.T) {
	client := stamp(stampPrefix("alice", "chat"), []byte(`{"text":"x"}`), false, 1)
	api, _ := apiMessage("chat", "", []byte(`{"from":"alice"}`), 1)
	for _, tc := range []struct {
		e    Envelope
		want string
	}{
		{Envelope{Kind: KindMessage, Action: "chat", Payload: client}, deliveryBroadcast},
		{Envelope{Kind: KindMessage, Action: "chat", User: "bob", Payload: client}, deliveryDirect},
		{Envelope{Kind: KindMessage, Action: "chat", Payload: api}, deliveryAPI},
		{Envelope{Kind: KindMessage, Action: "chat", User: "bob", Payload: api}, deliveryAPI},
	} {
		if got := deliveryKind(&tc.e); got != tc.want {
			t.Errorf("deliveryKind(%s, user %q) = %s, want %s", tc.e.Payload, tc.e.User, got, tc.want)
		}
	}
}

func TestDisconnectReason(t *testing.T) {
	if r, err := disconnectReason(""); err != nil || r != DefaultDisconnectReason {
		t.Fatalf("empty: got %q, %v", r, err)
	}
	ok := []string{"kicked", strings.Repeat("r", maxReasonLen), strings.Repeat("é", maxReasonLen/2)}
	for _, r := range ok {
		if got, err := disconnectReason(r); err != nil || got != r {
			t.Errorf("disconnectReason(%q) = %q, %v", r, got, err)
		}
	}
	bad := []string{strings.Repeat("r", maxReasonLen+1), "a\nb", "\x00", "\xff"}
	for _, r := range bad {
		if _, err := disconnectReason(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("disconnectReason(%q): got %v, want ErrInvalid", r, err)
		}
	}
	// The longest reason still makes a valid close frame.
	if n := len(websocket.FormatCloseMessage(websocket.CloseNormalClosure, strings.Repeat("r", maxReasonLen))); n > 125 {
		t.Fatalf("close frame payload %d bytes > 125", n)
	}
}

func TestValidConnID(t *testing.T) {
	for i := 0; i < 100; i++ {
		if id := newConnID(); !validConnID(id) {
			t.Fatalf("newConnID() = %q is not valid", id)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "a.b", strings.Repeat("a", 65), "é"} {
		if validConnID(id) {
			t.Errorf("validConnID(%q) = true", id)
		}
	}
}

// apiTestNode is a Router served by httptest, with the API mounted.
type apiTestNode struct {
	r   *Router
	srv *httptest.Server
}

const apiTestToken = "t0ken"

// newAPITestNode runs a Router on store and hub (a cluster in one process).
func newAPITestNode(t *testing.T, name string, store session.Store, hub *MemoryHub) *apiTestNode {
	t.Helper()
	n := startAPITestNode(t, Config{Node: name, Store: store, Broker: hub.Broker(name)})
	// Run registers the node's delivery with the hub: wait for it.
	apiWaitFor(t, "node running", func() bool {
		hub.mu.RLock()
		b := hub.nodes[name]
		hub.mu.RUnlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.deliver != nil
	})
	return n
}

// startAPITestNode runs a Router configured by cfg (a registry and a
// 1 KiB message limit added), served by httptest with the API mounted.
func startAPITestNode(t *testing.T, cfg Config) *apiTestNode {
	t.Helper()
	cfg.Registerer = prometheus.NewRegistry()
	cfg.MaxMessageBytes = 1024
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", r)
	mux.Handle("/api/", r.API(apiTestToken))
	n := &apiTestNode{r: r, srv: httptest.NewServer(mux)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	routerRunning()
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := r.Shutdown(sctx); err != nil {
			t.Errorf("shutdown %s: %v", cfg.Node, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run %s: %v", cfg.Node, err)
		}
		n.srv.Close()
		routerStopped(t)
	})
	return n
}

func apiWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do sends an API request with the token and decodes the JSON answer.
func (n *apiTestNode) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, n.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiTestToken)
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object", method, path, b)
	}
	return resp.StatusCode, m
}

// apiWS is a WebSocket client of an apiTestNode.
type apiWS struct {
	t  *testing.T
	ws *websocket.Conn
	id string
}

func (n *apiTestNode) online(t *testing.T, action, user string) *apiWS {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &apiWS{t: t, ws: ws}
	if err := ws.WriteJSON(map[string]string{"type": "online", "action": action, "user_id": user}); err != nil {
		t.Fatal(err)
	}
	m := c.next()
	if m["type"] != "ready" {
		t.Fatalf("got %v, want ready", m)
	}
	c.id = m["connection_id"].(string)
	return c
}

// next returns the next message that is not a join or leave event.
func (c *apiWS) next() map[string]any {
	c.t.Helper()
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		var m map[string]any
		if err := c.ws.ReadJSON(&m); err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if m["type"] != "join" && m["type"] != "leave" {
			return m
		}
	}
}

// closed checks that the connection gets the status message, then close 1000.
func (c *apiWS) closed(reason string) {
	c.t.Helper()
	m := c.next()
	if m["type"] != "status" || m["status"] != "disconnected" || m["reason"] != reason {
		c.t.Fatalf("got %v, want status disconnected %q", m, reason)
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != reason {
		c.t.Fatalf("got %v, want close 1000 %q", err, reason)
	}
}

// TestAPIInProcessCluster runs the API against three routers sharing a
// store and an in-memory hub: every call acts on every node.
func TestAPIInProcessCluster(t *testing.T) {
	store, hub := session.NewMemoryStore(), NewMemoryHub()
	ns := []*apiTestNode{
		newAPITestNode(t, "n0", store, hub),
		newAPITestNode(t, "n1", store, hub),
		newAPITestNode(t, "n2", store, hub),
	}
	a0 := ns[0].online(t, "chat", "alice")
	a1 := ns[1].online(t, "chat", "alice")
	b2 := ns[2].online(t, "chat", "bob")

	status, m := ns[0].do(t, "POST", "/api/publish", `{"action":"chat","to":"alice","text":"hi"}`)
	if status != 200 || m["delivered"] != 2.0 {
		t.Fatalf("publish: %d %v", status, m)
	}
	for _, c := range []*apiWS{a0, a1} {
		if got := c.next(); got["text"] != "hi" || got["from"] != nil || got["to"] != "alice" {
			t.Fatalf("got %v", got)
		}
	}
	// The publishing node counts its local deliveries as kind api; the
	// others count theirs when they deliver.
	if got := counterValue(ns[0].r.metrics.delivered[deliveryAPI]); got != 1 {
		t.Fatalf("node 0: api deliveries = %v, want 1", got)
	}
	apiWaitFor(t, "node 1 to count its delivery", func() bool {
		d := ns[1].r.metrics.delivered
		return counterValue(d[deliveryAPI])+counterValue(d[deliveryDirect]) == 1
	})
	if got := counterValue(ns[0].r.metrics.apiRequests.WithLabelValues("publish", "200")); got != 1 {
		t.Fatalf("api requests{publish,200} = %v, want 1", got)
	}

	status, m = ns[0].do(t, "GET", "/api/actions/chat", "")
	if status != 200 || m["connections"] != 3.0 || fmt.Sprint(m["users"]) != "[alice bob]" {
		t.Fatalf("presence: %d %v", status, m)
	}

	// One connection, held by another node.
	status, m = ns[2].do(t, "DELETE", "/api/connections/"+a1.id+"?reason=bye", "")
	if status != 200 || m["disconnected"] != 1.0 {
		t.Fatalf("disconnect connection: %d %v", status, m)
	}
	a1.closed("bye")
	apiWaitFor(t, "the binding to go", func() bool {
		_, err := store.Get(context.Background(), a1.id)
		return errors.Is(err, session.ErrNotFound)
	})

	// The whole action, on every node.
	a1b := ns[1].online(t, "chat", "alice")
	status, m = ns[1].do(t, "DELETE", "/api/actions/chat", `{"reason":"closing"}`)
	if status != 200 || m["disconnected"] != 3.0 {
		t.Fatalf("disconnect action: %d %v", status, m)
	}
	for _, c := range []*apiWS{a0, a1b, b2} {
		c.closed("closing")
	}
	apiWaitFor(t, "bindings removed", func() bool {
		n, _ := store.CountAction(context.Background(), "chat")
		return n == 0
	})
	for i, n := range ns {
		if got := counterValue(n.r.metrics.disconnects.WithLabelValues("api")); got < 1 {
			t.Errorf("node %d: disconnects{api} = %v", i, got)
		}
	}
}

// flakyStore is a store that can be made unreachable.
type flakyStore struct {
	*session.MemoryStore
	down atomic.Bool
}

func (s *flakyStore) err() error {
	if s.down.Load() {
		return fmt.Errorf("%w: test", session.ErrUnavailable)
	}
	return nil
}

func (s *flakyStore) ActionConns(ctx context.Context, a string) (map[string]string, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.MemoryStore.ActionConns(ctx, a)
}

func (s *flakyStore) CountAction(ctx context.Context, a string) (int, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.MemoryStore.CountAction(ctx, a)
}

func (s *flakyStore) UserBindings(ctx context.Context, u string) ([]session.Binding, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.MemoryStore.UserBindings(ctx, u)
}

func (s *flakyStore) Get(ctx context.Context, id string) (session.Binding, error) {
	if err := s.err(); err != nil {
		return session.Binding{}, err
	}
	return s.MemoryStore.Get(ctx, id)
}

func TestAPIStoreDown(t *testing.T) {
	store := &flakyStore{MemoryStore: session.NewMemoryStore()}
	n := newAPITestNode(t, "n0", store, NewMemoryHub())
	c := n.online(t, "chat", "alice")
	store.down.Store(true)
	for _, call := range [][2]string{
		{"GET", "/api/actions/chat"},
		{"GET", "/api/users/alice"},
		{"DELETE", "/api/actions/chat"},
		{"DELETE", "/api/users/alice"},
		{"DELETE", "/api/connections/" + c.id},
	} {
		status, m := n.do(t, call[0], call[1], "")
		if status != http.StatusServiceUnavailable || !strings.HasPrefix(fmt.Sprint(m["error"]), "unavailable") {
			t.Errorf("%s %s: got %d %v, want 503 unavailable", call[0], call[1], status, m)
		}
	}
	// Publishing needs no store: local delivery goes on.
	status, m := n.do(t, "POST", "/api/publish", `{"action":"chat","text":"still here"}`)
	if status != 200 || m["delivered"] != 1.0 {
		t.Fatalf("publish with the store down: %d %v", status, m)
	}
	if got := c.next(); got["text"] != "still here" {
		t.Fatalf("got %v", got)
	}
	if got := counterValue(n.r.metrics.apiRequests.WithLabelValues("presence", "503")); got != 1 {
		t.Fatalf("api requests{presence,503} = %v, want 1", got)
	}
}

// FuzzAPIMessage checks that any object the API accepts becomes one valid
// JSON object with the server's action and ts and without from.
func FuzzAPIMessage(f *testing.F) {
	for _, s := range []string{`{}`, `{"from":"x","a":[1,{"b":"}"}]}`, `{"type":"t","to":"u","ts":"x"}`, ` { "fr\u006fm" : 1 } `, `[]`, `{"a":"\"}"}`} {
		f.Add(s, "bob")
	}
	f.Fuzz(func(t *testing.T, obj, to string) {
		if to != "" && !ValidUserID(to) {
			return
		}
		out, err := apiMessage("chat", to, []byte(obj), 42)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if !utf8.Valid(out) {
			t.Fatalf("apiMessage(%q) = %q is not UTF-8", obj, out)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("apiMessage(%q) = %q: %v", obj, out, err)
		}
		if _, ok := m["from"]; ok {
			t.Fatalf("apiMessage(%q) = %q has from", obj, out)
		}
		if string(m["action"]) != `"chat"` || string(m["ts"]) != "42" {
			t.Fatalf("apiMessage(%q) = %q: wrong action or ts", obj, out)
		}
		if to != "" {
			var got string
			if json.Unmarshal(m["to"], &got) != nil || got != to {
				t.Fatalf("apiMessage(%q, to %q) = %q: wrong to", obj, to, out)
			}
		} else if _, ok := m["to"]; ok {
			t.Fatalf("apiMessage(%q) = %q keeps the body's to", obj, out)
		}
		for k := range m {
			for _, name := range []string{"from", "action", "ts", "to", "type"} {
				if strings.EqualFold(k, name) && k != name {
					t.Fatalf("apiMessage(%q) = %q keeps %q", obj, out, k)
				}
			}
		}
		if _, ok := m["type"]; !ok {
			t.Fatalf("apiMessage(%q) = %q has no type", obj, out)
		}
	})
}

// lostReplyStore carries out an Unbind and then reports that it failed,
// once: a Redis reply lost to a timeout while Redis, stalled, ran the
// command later.
type lostReplyStore struct {
	*session.MemoryStore
	lose atomic.Bool
}

func (s *lostReplyStore) Unbind(ctx context.Context, id string) (session.Removed, error) {
	r, err := s.MemoryStore.Unbind(ctx, id)
	if err == nil && s.lose.CompareAndSwap(true, false) {
		return session.Removed{}, fmt.Errorf("%w: reply lost (test)", session.ErrUnavailable)
	}
	return r, err
}

// TestLeaveAfterLostUnbindReply: the unbind of a user's last connection
// is carried out but its answer is lost. The retry finds no binding; the
// leave is sent all the same (it was not: presence kept the user).
func TestLeaveAfterLostUnbindReply(t *testing.T) {
	store := &lostReplyStore{MemoryStore: session.NewMemoryStore()}
	n := newAPITestNode(t, "n0", store, NewMemoryHub())
	watcher := n.online(t, "chat", "watcher")
	gone := n.online(t, "chat", "gone")
	store.lose.Store(true)
	_ = gone.ws.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = watcher.ws.SetReadDeadline(deadline)
		var m map[string]any
		if err := watcher.ws.ReadJSON(&m); err != nil {
			t.Fatalf("watcher: %v before the leave of gone", err)
		}
		if m["type"] == "leave" && m["user_id"] == "gone" {
			break
		}
	}
	if store.lose.Load() {
		t.Fatal("the unbind's reply was not lost: the test tested nothing")
	}
}
