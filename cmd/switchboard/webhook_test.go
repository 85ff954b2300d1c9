package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard/switchboard/internal/redistest"
)

// hookSecret is the WEBHOOK_SECRET of the tests.
const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hook is one verified webhook request.
type hook struct {
	ID   string
	Type string
	Data map[string]any
	Body []byte
	At   time.Time
}

// hookReceiver is a real HTTP receiver that verifies each request with the
// official Standard Webhooks library. While down, it answers 503.
type hookReceiver struct {
	t   *testing.T
	srv *httptest.Server
	wh  *standardwebhooks.Webhook

	mu   sync.Mutex
	down bool
	got  []hook // acknowledged requests
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{t: t, wh: wh}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := r.wh.Verify(body, req.Header); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.got = append(r.got, hook{ID: req.Header.Get("webhook-id"), Type: b.Type, Data: b.Data, Body: body, At: time.Now()})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// hooks returns the acknowledged events of type typ for user ("" = any).
func (r *hookReceiver) hooks(typ, user string) []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hook
	for _, h := range r.got {
		u, _ := h.Data["user_id"].(string)
		if h.Type == typ && (user == "" || u == user || h.Data["to"] == user) {
			out = append(out, h)
		}
	}
	return out
}

func (r *hookReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func webhookArgs(r *hookReceiver, delay string) []string {
	return []string{"--webhook-url", r.srv.URL, "--webhook-secret", hookSecret, "--webhook-offline-delay", delay}
}

func TestWebhooksEndToEnd(t *testing.T) {
	rcv := newHookReceiver(t)
	// A delay long enough for a reload on a busy machine.
	n := startNode(t, append(webhookArgs(rcv, "2s"), "--admin-token", testAdminToken, "--node-id", "n1")...)

	alice := n.online(t, "chat", "alice")
	waitFor(t, 10*time.Second, "user.online", func() bool { return len(rcv.hooks("user.online", "alice")) == 1 })
	on := rcv.hooks("user.online", "alice")[0]
	if on.Data["connection_id"] != connID(t, alice) || on.Data["node"] != "n1" || on.Data["action"] != "chat" {
		t.Fatalf("user.online data = %v", on.Data)
	}

	// A direct message to someone with no connection, from a client and
	// from the server API; a message to oneself is not undelivered.
	alice.send(map[string]any{"to": "bob", "text": "psst", "id": 1})
	alice.next()
	mustCall(t, n, "POST", "/api/publish", `{"action":"chat","to":"bob","text":"from the backend"}`)
	alice.send(map[string]any{"to": "alice", "text": "note to self", "id": 2})
	alice.next()
	waitFor(t, 10*time.Second, "two message.undelivered", func() bool { return len(rcv.hooks("message.undelivered", "bob")) == 2 })
	for _, h := range rcv.hooks("message.undelivered", "") {
		d := h.Data
		if d["to"] != "bob" || d["action"] != "chat" || d["type"] != "message" || d["ts"] == nil || d["seq"] == nil {
			t.Fatalf("message.undelivered data = %v, want the message as delivered", d)
		}
	}
	first := rcv.hooks("message.undelivered", "bob")[0].Data
	if first["from"] != "alice" || first["text"] != "psst" {
		t.Fatalf("message.undelivered data = %v", first)
	}

	// A reload within the delay emits nothing; a real leave emits user.offline.
	// (The server must have seen the first connection go before the second
	// comes: else the user never left.)
	alice.ws.Close()
	waitFor(t, 10*time.Second, "the server to see alice leave", func() bool {
		conns, _ := mustCall(t, n, "GET", "/api/users/alice", "")["connections"].([]any)
		return len(conns) == 0
	})
	alice = n.online(t, "chat", "alice")
	closed := time.Now()
	alice.ws.Close()
	waitFor(t, 10*time.Second, "user.offline", func() bool { return len(rcv.hooks("user.offline", "alice")) == 1 })
	if d := time.Since(closed); d < 1900*time.Millisecond {
		t.Fatalf("user.offline %v after the close, want after the 2s delay", d)
	}
	if got := len(rcv.hooks("user.online", "alice")); got != 1 {
		t.Fatalf("%d user.online for alice, want 1 (the reload emits nothing)", got)
	}
	if rcv.count() != 4 {
		t.Fatalf("got %d events, want 4", rcv.count())
	}
	// The sender counts an event once it has read the answer: wait for it.
	for _, m := range []string{"switchboard_webhook_delivered_total 4", "switchboard_webhook_debounced_total 1", "switchboard_webhook_queue_length"} {
		waitFor(t, 10*time.Second, "metric "+m, func() bool { return strings.Contains(scrape(t, n), m) })
	}
}

// scrape returns /metrics.
func scrape(t *testing.T, n *testNode) string {
	t.Helper()
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-url", "http://x.test/hook"}, "WEBHOOK_SECRET is required"},
		{[]string{"--webhook-url", "http://x.test/hook", "--webhook-secret", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "invalid WEBHOOK_SECRET"},
		{[]string{"--webhook-url", "http://x.test/hook", "--webhook-secret", "whsec_%%%"}, "invalid WEBHOOK_SECRET"},
		{[]string{"--webhook-url", "ftp://x.test/hook", "--webhook-secret", hookSecret}, "invalid WEBHOOK_URL"},
		{[]string{"--webhook-url", "http://x.test/hook", "--webhook-secret", hookSecret, "--webhook-timeout", "0"}, "WEBHOOK_TIMEOUT"},
	} {
		_, err := parseConfig(tc.args, func(string) string { return "" }, io.Discard)
		// The option is named as it was given: flag or environment variable.
		norm := func(s string) string {
			return strings.ReplaceAll(strings.ReplaceAll(strings.ToLower(s), "_", "-"), "--", "")
		}
		if err == nil || !strings.Contains(norm(err.Error()), norm(tc.want)) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	// From the environment too.
	env := map[string]string{"WEBHOOK_URL": "http://x.test/hook"}
	if _, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") {
		t.Errorf("WEBHOOK_URL without WEBHOOK_SECRET in the environment: error %v", err)
	}
	env["WEBHOOK_SECRET"] = hookSecret
	if c, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard); err != nil || len(c.Webhook.Key) != 24 {
		t.Errorf("valid webhook environment: %v", err)
	}
}

func TestWebhookTestCommand(t *testing.T) {
	rcv := newHookReceiver(t)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"webhook", "test", "--webhook-url", rcv.srv.URL, "--webhook-secret", hookSecret},
		func(string) string { return "" }, &out, &errOut)
	if err != nil {
		t.Fatalf("webhook test: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "answer: 204") {
		t.Fatalf("output %q, want the answer's status", out.String())
	}
	if got := rcv.hooks("webhook.test", ""); len(got) != 1 || !strings.Contains(out.String(), got[0].ID) {
		t.Fatalf("receiver got %v", got)
	}
	rcv.setDown(true)
	out.Reset()
	err = run(context.Background(), []string{"webhook", "test"},
		func(k string) string {
			return map[string]string{"WEBHOOK_URL": rcv.srv.URL, "WEBHOOK_SECRET": hookSecret}[k]
		}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "answer: 503") {
		t.Fatalf("with the receiver down: err %v, output %q; want the 503 shown and an error", err, out.String())
	}
}

// A node killed with SIGKILL while its users' events are queued and the
// receiver is down: once the receiver is back, every event arrives, and
// the killed node's users get user.offline within 2×HEARTBEAT_TTL plus the
// delay.
func TestWebhooksNodeKilled(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIGKILL test runs on Linux")
	}
	const ttl, delay = 2 * time.Second, 500 * time.Millisecond
	rcv := newHookReceiver(t)
	rcv.setDown(true)
	rs := redistest.Start(t)
	hookArgs := webhookArgs(rcv, delay.String())
	// The doomed node starts first: it takes the webhook queue's partitions.
	dying := startBinary(t, buildBinary(t), append([]string{"--redis-url", rs.URL(), "--heartbeat-ttl", ttl.String(), "--node-id", "doomed"}, hookArgs...)...)
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	for _, u := range users {
		c := dying.online(t, "chat", u)
		c.send(map[string]any{"to": "nobody-" + u, "text": "hi", "id": 1})
		c.next()
	}
	startNodes(t, rs.URL(), 1, hookArgs...)
	time.Sleep(300 * time.Millisecond) // the doomed node's attempts fail meanwhile; it holds the queue

	killed := time.Now()
	if err := dying.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup
		t.Fatal(err)
	}
	rcv.setDown(false)
	limit := 2*ttl + delay
	waitFor(t, limit+5*time.Second, "every event of the killed node", func() bool {
		for _, u := range users {
			if len(rcv.hooks("user.online", u)) == 0 || len(rcv.hooks("message.undelivered", "nobody-"+u)) == 0 || len(rcv.hooks("user.offline", u)) == 0 {
				return false
			}
		}
		return true
	})
	for _, u := range users {
		off := rcv.hooks("user.offline", u)[0]
		if d := off.At.Sub(killed); d > limit+time.Second {
			t.Errorf("user.offline of %s %v after the kill, want within 2×TTL + delay (%v)", u, d, limit)
		}
		if on := rcv.hooks("user.online", u)[0]; on.At.After(off.At) {
			t.Errorf("%s: user.offline before user.online", u)
		}
	}
}

// A node that stops gracefully hands its users' user.offline to the
// others; a user who moves to another node within the delay (a rolling
// restart) emits nothing.
func TestWebhooksNodeStops(t *testing.T) {
	rcv := newHookReceiver(t)
	rs := redistest.Start(t)
	ns := startNodes(t, rs.URL(), 2, webhookArgs(rcv, "1s")...)
	ns[0].online(t, "chat", "leaving")
	ns[0].online(t, "chat", "moving")
	waitFor(t, 10*time.Second, "two user.online", func() bool { return len(rcv.hooks("user.online", "")) == 2 })
	ns[0].stop()
	ns[1].online(t, "chat", "moving") // reconnects to the other node at once
	waitFor(t, 10*time.Second, "user.offline of the user who left", func() bool { return len(rcv.hooks("user.offline", "leaving")) == 1 })
	time.Sleep(1500 * time.Millisecond) // asserting an absence: past the delay
	if got := rcv.count(); got != 3 {
		t.Fatalf("got %d events, want 3 (two user.online, one user.offline)", got)
	}
}

// A blocked sender's direct messages emit no message.undelivered (in
// memory and through Redis's direct-message script).
func TestWebhooksBlockedSenderEmitsNothing(t *testing.T) {
	rcv := newHookReceiver(t)
	rs := redistest.Start(t)
	for name, args := range map[string][]string{
		"memory": webhookArgs(rcv, "5s"),
		"redis":  append(webhookArgs(rcv, "5s"), "--redis-url", rs.URL()),
	} {
		t.Run(name, func(t *testing.T) {
			n := startNode(t, args...)
			alice := n.online(t, "chat", "alice-"+name)
			mallory := n.online(t, "chat", "mallory-"+name)
			alice.send(map[string]any{"type": "block", "user_id": "mallory-" + name, "id": "b1"})
			alice.expect("blocks")
			mallory.send(map[string]any{"text": "hi", "to": "alice-" + name, "id": 1})
			mallory.next()
			mallory.send(map[string]any{"text": "x", "to": "nobody-" + name, "id": 2})
			mallory.next()
			waitFor(t, 10*time.Second, "the message to nobody", func() bool { return len(rcv.hooks("message.undelivered", "nobody-"+name)) == 1 })
			if got := rcv.hooks("message.undelivered", "alice-"+name); len(got) != 0 {
				t.Fatalf("a blocked message emitted %s", got[0].Body)
			}
		})
	}
}
