package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/internal/redistest"
)

// testAdminToken is the ADMIN_TOKEN of the nodes the API tests start.
const testAdminToken = "s3cret-admin-token"

// apiReply is a server API answer.
type apiReply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// apiRequest sends one server API request to n, with token as the bearer
// token when not empty.
func apiRequest(t testing.TB, n *testNode, method, path, token, body string) apiReply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	r := apiReply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if err := json.Unmarshal(b, &r.body); err != nil {
		t.Fatalf("%s %s: %d with a body that is not a JSON object: %q", method, path, r.status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return r
}

// adminCall sends a request with the right admin token.
func adminCall(t testing.TB, n *testNode, method, path, body string) apiReply {
	t.Helper()
	return apiRequest(t, n, method, path, testAdminToken, body)
}

// mustCall sends a request with the right admin token and checks it got 200.
func mustCall(t testing.TB, n *testNode, method, path, body string) map[string]any {
	t.Helper()
	r := adminCall(t, n, method, path, body)
	if r.status != http.StatusOK {
		t.Fatalf("%s %s: got %d %s, want 200", method, path, r.status, r.raw)
	}
	return r.body
}

// expectAPIError checks an error answer: status and a non-empty message.
func expectAPIError(t testing.TB, r apiReply, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %d %s, want %d", what, r.status, r.raw, status)
	}
	if msg, _ := r.body["error"].(string); msg == "" || len(r.body) != 1 {
		t.Fatalf("%s: body %s, want {\"error\":\"…\"}", what, r.raw)
	}
}

// onlineConn connects a client to n and returns it with its connection id.
// Once the client has ready, the API reaches it: the tests rely on that.
func onlineConn(t testing.TB, n *testNode, action, user string) (*client, string) {
	t.Helper()
	c := n.online(t, action, user)
	c.name = user + "/" + action
	id, _ := c.ready["connection_id"].(string)
	return c, id
}

// expectAPIMessage reads the next message, which must come from the server
// API: no `from`, a server ts, and the fields of want.
func expectAPIMessage(c *client, want map[string]any) {
	c.t.Helper()
	m := c.next()
	if from, ok := m["from"]; ok {
		c.t.Fatalf("%s: API message %v has from %v", c.name, m, from)
	}
	ts, _ := m["ts"].(float64)
	if now := float64(time.Now().UnixMilli()); ts < now-60000 || ts > now+1000 {
		c.t.Fatalf("%s: API message %v: ts is not the server's time", c.name, m)
	}
	for k, v := range want {
		if m[k] != v {
			c.t.Fatalf("%s: got %v, want %s=%v", c.name, m, k, v)
		}
	}
}

// expectDisconnected checks that c gets the API's status message with
// reason, then close 1000.
func expectDisconnected(c *client, reason string) {
	c.t.Helper()
	m := c.next()
	if m["type"] != "status" || m["status"] != "disconnected" || m["reason"] != reason {
		c.t.Fatalf("%s: got %v, want status disconnected with reason %q", c.name, m, reason)
	}
	c.expectClose(1000)
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestAPINotServedWithoutAdminToken(t *testing.T) {
	n := startNode(t)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/api/publish"},
		{"GET", "/api/actions/chat"},
		{"GET", "/api/users/alice"},
		{"DELETE", "/api/actions/chat"},
		{"DELETE", "/api/users/alice"},
		{"DELETE", "/api/connections/abc"},
		{"GET", "/api/"},
	} {
		for _, token := range []string{"", "anything"} {
			r := apiRequest(t, n, tc.method, tc.path, token, `{"action":"chat"}`)
			expectAPIError(t, r, http.StatusNotFound, tc.method+" "+tc.path)
		}
	}
}

func TestAPIAuth(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken)
	send := func(hdr string) apiReply {
		t.Helper()
		req, _ := http.NewRequest("GET", n.url+"/api/actions/chat", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := apiReply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("body %q is not JSON", b)
		}
		return r
	}
	for _, tc := range []struct{ name, header string }{
		{"no header", ""},
		{"empty bearer", "Bearer "},
		{"wrong token", "Bearer wrong"},
		{"prefix of the token", "Bearer " + testAdminToken[:len(testAdminToken)-1]},
		{"token with a suffix", "Bearer " + testAdminToken + "x"},
		{"basic auth", "Basic " + testAdminToken},
		{"bare token", testAdminToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(tc.header)
			expectAPIError(t, r, http.StatusUnauthorized, tc.name)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// Unknown paths and wrong methods do not leak before authentication.
	for _, p := range []string{"/api/nope", "/api/publish"} {
		expectAPIError(t, apiRequest(t, n, "GET", p, "", ""), http.StatusUnauthorized, "GET "+p)
	}
	// The scheme is case-insensitive (RFC 7235).
	if r := send("bearer " + testAdminToken); r.status != http.StatusOK {
		t.Fatalf("lower-case bearer: got %d %s", r.status, r.raw)
	}
	if r := send("Bearer " + testAdminToken); r.status != http.StatusOK {
		t.Fatalf("right token: got %d %s", r.status, r.raw)
	}
}

func TestAPIPublish(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken)
	alice1, _ := onlineConn(t, n, "chat", "alice")
	alice2, _ := onlineConn(t, n, "chat", "alice")
	bob, _ := onlineConn(t, n, "chat", "bob")
	carol, _ := onlineConn(t, n, "other", "carol")

	// To the whole action: every connection, and nothing of from, action
	// or ts survives from the body.
	r := mustCall(t, n, "POST", "/api/publish",
		`{"action":"chat","text":"hello","from":"mallory","ts":1,"nested":{"from":"x"},"id":7}`)
	if num(r["delivered"]) != 3 || len(r) != 1 {
		t.Fatalf("publish to the action: got %v, want {\"delivered\":3}", r)
	}
	for _, c := range []*client{alice1, alice2, bob} {
		expectAPIMessage(c, map[string]any{"type": "message", "action": "chat", "text": "hello", "id": 7.0})
	}

	// To one user: both of alice's devices, nobody else; type kept.
	r = mustCall(t, n, "POST", "/api/publish", `{"action":"chat","to":"alice","type":"notice","n":1}`)
	if num(r["delivered"]) != 2 {
		t.Fatalf("publish to alice: got %v, want delivered 2", r)
	}
	for _, c := range []*client{alice1, alice2} {
		expectAPIMessage(c, map[string]any{"type": "notice", "action": "chat", "to": "alice", "n": 1.0})
	}

	// Nobody there is not an error.
	for _, body := range []string{
		`{"action":"chat","to":"nobody","text":"x"}`,
		`{"action":"empty","text":"x"}`,
		`{"action":"other","to":"alice","text":"x"}`, // alice is not in "other"
	} {
		if r := mustCall(t, n, "POST", "/api/publish", body); num(r["delivered"]) != 0 {
			t.Fatalf("publish %s: got %v, want delivered 0", body, r)
		}
	}

	// A message to carol's action reaches only her.
	mustCall(t, n, "POST", "/api/publish", `{"action":"other","text":"only carol"}`)
	expectAPIMessage(carol, map[string]any{"text": "only carol"})
	for _, c := range []*client{alice1, alice2, bob} {
		c.expectNothing(100 * time.Millisecond)
	}
	carol.expectNothing(50 * time.Millisecond)
}

func TestAPIPresenceAndUsers(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken, "--node-id", "node-a")
	start := time.Now().UnixMilli()
	_, a1 := onlineConn(t, n, "chat", "alice")
	_, a2 := onlineConn(t, n, "lobby", "alice")
	onlineConn(t, n, "chat", "bob")
	onlineConn(t, n, "chat", "bob")
	_, odd := onlineConn(t, n, "chat", "auth0|5f7c/é x")
	end := time.Now().UnixMilli()

	r := mustCall(t, n, "GET", "/api/actions/chat", "")
	if r["action"] != "chat" || num(r["connections"]) != 4 ||
		!slices.Equal(strs(r["users"]), []string{"alice", "auth0|5f7c/é x", "bob"}) {
		t.Fatalf("presence: got %v", r)
	}
	r = mustCall(t, n, "GET", "/api/actions/empty", "")
	if r["action"] != "empty" || num(r["connections"]) != 0 || len(r["users"].([]any)) != 0 {
		t.Fatalf("presence of an empty action: got %v, want no users", r)
	}

	r = mustCall(t, n, "GET", "/api/users/alice", "")
	if r["user_id"] != "alice" {
		t.Fatalf("user: got %v", r)
	}
	conns := r["connections"].([]any)
	if len(conns) != 2 {
		t.Fatalf("alice's connections: got %v, want 2", conns)
	}
	got := map[string]string{}
	for _, x := range conns {
		c := x.(map[string]any)
		if c["node"] != "node-a" || len(c) != 4 {
			t.Fatalf("connection %v: want connection_id, action, node node-a, connected_at", c)
		}
		if at := int64(c["connected_at"].(float64)); at < start || at > end {
			t.Fatalf("connection %v: connected_at not in [%d, %d]", c, start, end)
		}
		got[c["connection_id"].(string)] = c["action"].(string)
	}
	if got[a1] != "chat" || got[a2] != "lobby" {
		t.Fatalf("alice's connections: got %v, want %s in chat and %s in lobby", got, a1, a2)
	}

	// Any valid user id works, percent-encoded in the path.
	r = mustCall(t, n, "GET", "/api/users/"+url.PathEscape("auth0|5f7c/é x"), "")
	if r["user_id"] != "auth0|5f7c/é x" || len(r["connections"].([]any)) != 1 ||
		r["connections"].([]any)[0].(map[string]any)["connection_id"] != odd {
		t.Fatalf("user with an odd id: got %v", r)
	}
	r = mustCall(t, n, "GET", "/api/users/nobody", "")
	if r["user_id"] != "nobody" || len(r["connections"].([]any)) != 0 {
		t.Fatalf("unknown user: got %v, want no connections", r)
	}
}

func TestAPIDisconnect(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken)

	t.Run("connection", func(t *testing.T) {
		a1, id1 := onlineConn(t, n, "c1", "alice")
		a2, _ := onlineConn(t, n, "c1", "alice")
		r := mustCall(t, n, "DELETE", "/api/connections/"+id1+"?reason=kicked", "")
		if num(r["disconnected"]) != 1 || len(r) != 1 {
			t.Fatalf("got %v, want {\"disconnected\":1}", r)
		}
		expectDisconnected(a1, "kicked")
		a2.expectNothing(100 * time.Millisecond)
		waitFor(t, 5*time.Second, "the binding to go", func() bool {
			return len(mustCall(t, n, "GET", "/api/users/alice", "")["connections"].([]any)) == 1
		})
		expectAPIError(t, adminCall(t, n, "DELETE", "/api/connections/"+id1, ""), http.StatusNotFound, "a closed connection")
		expectAPIError(t, adminCall(t, n, "DELETE", "/api/connections/AAAAAAAAAAAAAAAA", ""), http.StatusNotFound, "an unknown connection")
		a2.ws.Close()
		waitFor(t, 5*time.Second, "alice's last binding to go", func() bool {
			return len(mustCall(t, n, "GET", "/api/users/alice", "")["connections"].([]any)) == 0
		})
	})

	t.Run("user", func(t *testing.T) {
		a1, _ := onlineConn(t, n, "c2", "alice")
		a2, _ := onlineConn(t, n, "c2-other", "alice")
		bob, _ := onlineConn(t, n, "c2", "bob")
		// The reason may also come as a JSON body.
		r := mustCall(t, n, "DELETE", "/api/users/alice", `{"reason":"account closed"}`)
		if num(r["disconnected"]) != 2 {
			t.Fatalf("got %v, want disconnected 2", r)
		}
		expectDisconnected(a1, "account closed")
		expectDisconnected(a2, "account closed")
		bob.expectEvent("leave", "alice")
		bob.send(map[string]any{"type": "ping"})
		bob.expect("pong")
		if r := mustCall(t, n, "DELETE", "/api/users/nobody", ""); num(r["disconnected"]) != 0 {
			t.Fatalf("unknown user: got %v, want disconnected 0", r)
		}
		bob.ws.Close()
	})

	t.Run("action", func(t *testing.T) {
		a, _ := onlineConn(t, n, "c3", "alice")
		b, _ := onlineConn(t, n, "c3", "bob")
		b2, _ := onlineConn(t, n, "c3", "bob")
		carol, _ := onlineConn(t, n, "c3-other", "carol")
		r := mustCall(t, n, "DELETE", "/api/actions/c3", "")
		if num(r["disconnected"]) != 3 {
			t.Fatalf("got %v, want disconnected 3", r)
		}
		for _, c := range []*client{a, b, b2} {
			expectDisconnected(c, "disconnected by the server")
		}
		carol.send(map[string]any{"type": "ping"})
		carol.expect("pong")
		waitFor(t, 5*time.Second, "the action to empty", func() bool {
			return num(mustCall(t, n, "GET", "/api/actions/c3", "")["connections"]) == 0
		})
		if r := mustCall(t, n, "DELETE", "/api/actions/c3", ""); num(r["disconnected"]) != 0 {
			t.Fatalf("empty action: got %v, want disconnected 0", r)
		}
	})
}

func TestAPIBadRequests(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken)
	long := strings.Repeat("u", 257)
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/publish", ``, 400},
		{"POST", "/api/publish", `not json`, 400},
		{"POST", "/api/publish", `{"action":"chat"`, 400},
		{"POST", "/api/publish", `[{"action":"chat"}]`, 400},
		{"POST", "/api/publish", `"chat"`, 400},
		{"POST", "/api/publish", `{"action":"chat"} {}`, 400},
		{"POST", "/api/publish", "{\"action\":\"chat\",\"text\":\"\xff\"}", 400},
		{"POST", "/api/publish", `{"text":"no action"}`, 400},
		{"POST", "/api/publish", `{"action":null}`, 400},
		{"POST", "/api/publish", `{"action":5}`, 400},
		{"POST", "/api/publish", `{"action":""}`, 400},
		{"POST", "/api/publish", `{"action":"bad action!"}`, 400},
		{"POST", "/api/publish", `{"action":"` + strings.Repeat("a", 65) + `"}`, 400},
		{"POST", "/api/publish", `{"action":"chat","to":5}`, 400},
		{"POST", "/api/publish", `{"action":"chat","to":null}`, 400},
		{"POST", "/api/publish", `{"action":"chat","to":""}`, 400},
		{"POST", "/api/publish", `{"action":"chat","to":"` + long + `"}`, 400},
		{"POST", "/api/publish", `{"action":"chat","type":"ack"}`, 400},
		{"POST", "/api/publish", `{"action":"chat","type":"status"}`, 400},
		{"POST", "/api/publish", `{"action":"chat","type":3}`, 400},
		{"GET", "/api/actions/bad%20action", ``, 400},
		{"DELETE", "/api/actions/bad%20action", ``, 400},
		{"GET", "/api/users/" + long, ``, 400},
		{"GET", "/api/users/a%01b", ``, 400},
		{"DELETE", "/api/users/a%0Ab", ``, 400},
		{"DELETE", "/api/connections/not%20an%20id", ``, 400},
		{"DELETE", "/api/connections/" + strings.Repeat("A", 65), ``, 400},
		{"DELETE", "/api/users/alice", `[1]`, 400},
		{"DELETE", "/api/users/alice", `{"reason":5}`, 400},
		{"DELETE", "/api/users/alice", `{"reason":""}`, 400},
		{"DELETE", "/api/users/alice?reason=" + strings.Repeat("r", 124), ``, 400},
		{"DELETE", "/api/actions/chat?reason=a%0Ab", ``, 400},
		{"GET", "/api/nope", ``, 404},
		{"GET", "/api/", ``, 404},
		{"GET", "/api/actions/chat/extra", ``, 404},
		{"GET", "/api/publish", ``, 405},
		{"PUT", "/api/publish", `{}`, 405},
		{"POST", "/api/actions/chat", `{}`, 405},
		{"PATCH", "/api/users/alice", `{}`, 405},
		{"GET", "/api/connections/abc", ``, 405},
	} {
		name := fmt.Sprintf("%s %s %s", tc.method, tc.path, tc.body)
		r := adminCall(t, n, tc.method, tc.path, tc.body)
		expectAPIError(t, r, tc.status, name)
		if tc.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", name)
		}
	}
	// A bad request touched nobody.
	c := n.online(t, "chat", "alice")
	if r := mustCall(t, n, "GET", "/api/actions/chat", ""); num(r["connections"]) != 1 {
		t.Fatalf("presence after bad requests: %v", r)
	}
	c.expectNothing(50 * time.Millisecond)
}

func TestAPIBodyTooLarge(t *testing.T) {
	const limit = 1024
	n := startNode(t, "--admin-token", testAdminToken, "--max-message-bytes", fmt.Sprint(limit))
	c, _ := onlineConn(t, n, "chat", "alice")
	body := func(size int) string {
		head := `{"action":"chat","pad":"`
		return head + strings.Repeat("x", size-len(head)-2) + `"}`
	}
	if r := mustCall(t, n, "POST", "/api/publish", body(limit)); num(r["delivered"]) != 1 {
		t.Fatalf("a body of exactly MAX_MESSAGE_BYTES: got %v", r)
	}
	expectAPIMessage(c, map[string]any{"action": "chat"})
	expectAPIError(t, adminCall(t, n, "POST", "/api/publish", body(limit+1)), http.StatusRequestEntityTooLarge, "limit+1")
	expectAPIError(t, adminCall(t, n, "POST", "/api/publish", body(10*limit)), http.StatusRequestEntityTooLarge, "10×limit")
	expectAPIError(t, adminCall(t, n, "DELETE", "/api/users/alice", `{"reason":"`+strings.Repeat("x", 2*limit)+`"}`),
		http.StatusRequestEntityTooLarge, "DELETE body")
	c.expectNothing(50 * time.Millisecond)
}

// startAPICluster runs n nodes (ids node-0…) with the admin token, sharing
// one private Redis.
func startAPICluster(t *testing.T, n int) (*redistest.Server, []*testNode) {
	t.Helper()
	rs := redistest.Start(t)
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = startNode(t, "--redis-url", rs.URL(), "--admin-token", testAdminToken,
			"--node-id", fmt.Sprintf("node-%d", i), "--heartbeat-ttl", "2s")
	}
	return rs, nodes
}

func TestAPIStoreUnavailable(t *testing.T) {
	rs, ns := startAPICluster(t, 1)
	n := ns[0]
	onlineConn(t, n, "chat", "alice")
	rs.Stop()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/actions/chat"},
		{"GET", "/api/users/alice"},
		{"DELETE", "/api/actions/chat"},
		{"DELETE", "/api/users/alice"},
		{"DELETE", "/api/connections/AAAAAAAAAAAAAAAA"},
	} {
		r := adminCall(t, n, tc.method, tc.path, "")
		expectAPIError(t, r, http.StatusServiceUnavailable, tc.method+" "+tc.path)
		if !strings.Contains(r.body["error"].(string), "unavailable") {
			t.Errorf("%s %s: error %q does not say unavailable", tc.method, tc.path, r.body["error"])
		}
	}
}

func TestAPICluster(t *testing.T) {
	_, ns := startAPICluster(t, 3)
	aliceA, _ := onlineConn(t, ns[0], "chat", "alice")
	aliceB, aliceBID := onlineConn(t, ns[1], "chat", "alice")
	bob, _ := onlineConn(t, ns[2], "chat", "bob")
	carol, _ := onlineConn(t, ns[1], "other", "carol")
	aliceOther, _ := onlineConn(t, ns[2], "other", "alice")

	t.Run("presence from any node", func(t *testing.T) {
		for i, n := range ns {
			r := mustCall(t, n, "GET", "/api/actions/chat", "")
			if num(r["connections"]) != 3 || !slices.Equal(strs(r["users"]), []string{"alice", "bob"}) {
				t.Fatalf("presence on node %d: got %v", i, r)
			}
		}
	})

	t.Run("user connections on every node", func(t *testing.T) {
		r := mustCall(t, ns[1], "GET", "/api/users/alice", "")
		var got []string
		for _, x := range r["connections"].([]any) {
			c := x.(map[string]any)
			got = append(got, fmt.Sprint(c["node"], ":", c["action"]))
		}
		slices.Sort(got)
		if want := []string{"node-0:chat", "node-1:chat", "node-2:other"}; !slices.Equal(got, want) {
			t.Fatalf("alice's connections: got %v, want %v", got, want)
		}
	})

	t.Run("publish to an action from a node without its connections", func(t *testing.T) {
		// node-0 publishes to "other", whose connections are on node-1 and node-2.
		r := mustCall(t, ns[0], "POST", "/api/publish", `{"action":"other","text":"to other"}`)
		if num(r["delivered"]) != 2 {
			t.Fatalf("got %v, want delivered 2", r)
		}
		expectAPIMessage(carol, map[string]any{"text": "to other", "action": "other"})
		expectAPIMessage(aliceOther, map[string]any{"text": "to other", "action": "other"})
	})

	t.Run("publish to an action", func(t *testing.T) {
		r := mustCall(t, ns[2], "POST", "/api/publish", `{"action":"chat","text":"everyone"}`)
		if num(r["delivered"]) != 3 {
			t.Fatalf("got %v, want delivered 3", r)
		}
		for _, c := range []*client{aliceA, aliceB, bob} {
			expectAPIMessage(c, map[string]any{"text": "everyone", "action": "chat"})
		}
	})

	t.Run("publish to a user", func(t *testing.T) {
		r := mustCall(t, ns[2], "POST", "/api/publish", `{"action":"chat","to":"alice","text":"hi alice"}`)
		if num(r["delivered"]) != 2 {
			t.Fatalf("got %v, want delivered 2", r)
		}
		expectAPIMessage(aliceA, map[string]any{"text": "hi alice", "to": "alice"})
		expectAPIMessage(aliceB, map[string]any{"text": "hi alice", "to": "alice"})
		bob.expectNothing(100 * time.Millisecond)
		aliceOther.expectNothing(10 * time.Millisecond)
	})

	t.Run("disconnect a connection on another node", func(t *testing.T) {
		r := mustCall(t, ns[0], "DELETE", "/api/connections/"+aliceBID+"?reason=moved", "")
		if num(r["disconnected"]) != 1 {
			t.Fatalf("got %v, want disconnected 1", r)
		}
		expectDisconnected(aliceB, "moved")
		aliceA.expectNothing(100 * time.Millisecond)
		waitFor(t, 5*time.Second, "the binding to go", func() bool {
			return len(mustCall(t, ns[2], "GET", "/api/users/alice", "")["connections"].([]any)) == 2
		})
		expectAPIError(t, adminCall(t, ns[2], "DELETE", "/api/connections/"+aliceBID, ""), http.StatusNotFound, "gone")
	})

	t.Run("disconnect a user on every node", func(t *testing.T) {
		aliceC, _ := onlineConn(t, ns[1], "chat", "alice")
		// A new device catches up with what alice has not read.
		if m := aliceC.expect("message"); m["text"] != "hi alice" || m["seq"] != 1.0 {
			t.Fatalf("aliceC got %v, want the kept message with seq 1", m)
		}
		r := mustCall(t, ns[1], "DELETE", "/api/users/alice", `{"reason":"banned"}`)
		if num(r["disconnected"]) != 3 {
			t.Fatalf("got %v, want disconnected 3", r)
		}
		for _, c := range []*client{aliceA, aliceC, aliceOther} {
			expectDisconnected(c, "banned")
		}
		waitFor(t, 5*time.Second, "alice's bindings to go", func() bool {
			return len(mustCall(t, ns[0], "GET", "/api/users/alice", "")["connections"].([]any)) == 0
		})
	})

	t.Run("disconnect an action on every node", func(t *testing.T) {
		bob2, _ := onlineConn(t, ns[0], "chat", "bob")
		dave, _ := onlineConn(t, ns[1], "chat", "dave")
		r := mustCall(t, ns[1], "DELETE", "/api/actions/chat", "")
		if num(r["disconnected"]) != 3 {
			t.Fatalf("got %v, want disconnected 3", r)
		}
		for _, c := range []*client{bob, bob2, dave} {
			expectDisconnected(c, "disconnected by the server")
		}
		carol.send(map[string]any{"type": "ping"})
		carol.expect("pong")
		waitFor(t, 5*time.Second, "the action to empty", func() bool {
			return num(mustCall(t, ns[2], "GET", "/api/actions/chat", "")["connections"]) == 0
		})
	})
}
