package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/redistest"
)

// testVersion is stamped into the binary the tests build.
const testVersion = "9.8.7-test"

// buildBinary builds cmd/switchboard as the Dockerfile does and returns
// its path.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+testVersion, "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// binaryNode is a switchboard process.
type binaryNode struct {
	*testNode
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer // the process's logs
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

var listenLine = regexp.MustCompile(`msg="switchboard listening" addr=(\S+)`)

// startBinary runs bin on a free port and waits until it serves.
func startBinary(t *testing.T, bin string, args ...string) *binaryNode {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // nothing from the test's environment
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &binaryNode{cmd: cmd, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.stderr.WriteString(line + "\n")
			n.mu.Unlock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		n.err = cmd.Wait() // after the pipe is drained, as Wait requires
		close(n.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			_ = cmd.Process.Kill() // the test failed before stopping it
			<-n.exited
		}
		if t.Failed() {
			t.Logf("switchboard logs:\n%s", n.logs())
		}
	})
	select {
	case a := <-addr:
		n.testNode = &testNode{t: t, url: "http://" + a}
	case <-n.exited:
		t.Fatalf("switchboard exited at start: %v\n%s", n.err, n.logs())
	case <-time.After(10 * time.Second):
		t.Fatalf("switchboard did not start within 10s\n%s", n.logs())
	}
	return n
}

func (n *binaryNode) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stderr.String()
}

// terminate sends SIGTERM and returns how long the process took to exit,
// failing the test if it did not within limit or exited non-zero.
func (n *binaryNode) terminate(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(limit + 5*time.Second):
		t.Fatalf("switchboard still running %v after SIGTERM", limit+5*time.Second)
	}
	took := time.Since(start)
	if n.err != nil {
		t.Fatalf("switchboard exited with %v, want 0", n.err)
	}
	if took > limit {
		t.Fatalf("switchboard took %v to exit, more than SHUTDOWN_TIMEOUT %v", took, limit)
	}
	return took
}

// expectGoingAway checks that every client gets close 1001.
func expectGoingAway(t *testing.T, clients []*client) {
	t.Helper()
	for _, c := range clients {
		c.expectClose(websocket.CloseGoingAway)
	}
}

func TestShutdownMemory(t *testing.T) {
	bin := buildBinary(t)
	n := startBinary(t, bin, "--shutdown-timeout", "5s", "--admin-token", testAdminToken, "--log-level", "debug")
	var clients []*client
	for _, u := range []string{"alice", "bob", "carol"} {
		clients = append(clients, n.online(t, "chat", u), n.online(t, "lobby", u))
	}
	if r := mustCall(t, n.testNode, "GET", "/api/actions/chat", ""); num(r["connections"]) != 3 {
		t.Fatalf("presence before shutdown: %v", r)
	}
	// A client that never reads must not hold the shutdown up.
	stuck, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(n.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := stuck.WriteJSON(map[string]any{"type": "online", "action": "chat", "user_id": "stuck"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the stuck client online", func() bool {
		return num(mustCall(t, n.testNode, "GET", "/api/actions/chat", "")["connections"]) == 4
	})

	n.terminate(t, 5*time.Second)
	expectGoingAway(t, clients)
	logs := n.logs()
	if !strings.Contains(logs, "shut down cleanly") {
		t.Fatalf("no clean shutdown in the logs:\n%s", logs)
	}
	if _, err := n.tryDial("/ws", nil); err == nil {
		t.Fatal("a connection was accepted after the process exited")
	}
}

func TestShutdownRedis(t *testing.T) {
	bin := buildBinary(t)
	rs := redistest.Start(t)
	rdb := rs.Client()
	keys := func(pattern string) []string {
		t.Helper()
		ks, err := rdb.Keys(context.Background(), pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	n := startBinary(t, bin, "--redis-url", rs.URL(), "--node-id", "leaving", "--shutdown-timeout", "5s")
	// A second node stays up: its client sees the leaving node's users leave.
	other := startNode(t, "--redis-url", rs.URL(), "--node-id", "staying")
	watcher := other.online(t, "chat", "watcher")

	var clients []*client
	for _, u := range []string{"alice", "bob"} {
		clients = append(clients, n.online(t, "chat", u))
		watcher.expectEvent("join", u)
	}
	clients = append(clients, n.online(t, "lobby", "alice"), n.online(t, "lobby", "alice"))
	if got := len(keys("sb:conn:*")); got != 5 {
		t.Fatalf("sb:conn:* keys before shutdown: %d, want 5", got)
	}
	if got := keys("sb:node:leaving"); len(got) != 1 {
		t.Fatalf("no heartbeat key for the node: %v", keys("sb:*"))
	}

	n.terminate(t, 5*time.Second)
	expectGoingAway(t, clients)

	// Only the staying node's binding is left.
	conns := keys("sb:conn:*")
	if len(conns) != 1 {
		t.Fatalf("sb:conn:* after shutdown: %v, want only the watcher's", conns)
	}
	if node, _ := rdb.HGet(context.Background(), conns[0], "node").Result(); node != "staying" {
		t.Fatalf("binding %s left on node %q", conns[0], node)
	}
	for _, k := range []string{"sb:node:leaving", "sb:action:lobby", "sb:user:alice", "sb:user:bob"} {
		if got := keys(k); len(got) != 0 {
			t.Errorf("key %s left after shutdown", k)
		}
	}
	if users, _ := rdb.HVals(context.Background(), "sb:action:chat").Result(); len(users) != 1 || users[0] != "watcher" {
		t.Errorf("sb:action:chat after shutdown holds %v, want only watcher", users)
	}
	left := map[string]bool{}
	for len(left) < 2 {
		m, err := watcher.read(5 * time.Second)
		if err != nil {
			t.Fatalf("watcher: waiting for leave events: %v (got %v)", err, left)
		}
		if m["type"] == "leave" {
			left[m["user_id"].(string)] = true
		}
	}
	if !left["alice"] || !left["bob"] {
		t.Fatalf("leave events for %v, want alice and bob", left)
	}
}

func TestVersionFlag(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got, want := string(out), "switchboard "+testVersion+"\n"; got != want {
		t.Fatalf("--version printed %q, want %q", got, want)
	}
}

func TestHelpFlag(t *testing.T) {
	bin := buildBinary(t)
	for _, flag := range []string{"--help", "-h"} {
		cmd := exec.Command(bin, flag)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v", flag, err)
		}
		help := stdout.String() + stderr.String()
		if !strings.Contains(help, testVersion) || !strings.Contains(help, "--version") {
			t.Errorf("%s does not show the version and --version:\n%s", flag, help)
		}
		// Every option, with its environment variable and its default, on
		// the option's line.
		for _, o := range options {
			def := o.def
			if def == "" {
				def = `""`
			}
			re := regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(o.name) + `\s+` + regexp.QuoteMeta(o.envName()) + `\s+default ` + regexp.QuoteMeta(def) + `\s*$`)
			if !re.MatchString(help) {
				t.Errorf("%s: no line for --%s %s default %s in:\n%s", flag, o.name, o.envName(), def, help)
			}
		}
	}
	// The spec's names are all there.
	cmd := exec.Command(bin, "--help")
	out, _ := cmd.CombinedOutput()
	for _, env := range []string{
		"SWITCHBOARD_ADDR", "SWITCHBOARD_NODE_ID", "REDIS_URL", "REDIS_PREFIX", "ALLOWED_ORIGINS",
		"MAX_MESSAGE_BYTES", "ONLINE_TIMEOUT", "RATE_LIMIT", "RATE_BURST", "PRESENCE_EVENTS",
		"PRESENCE_EVENTS_LIMIT", "HEARTBEAT_TTL", "SHUTDOWN_TIMEOUT", "JWT_SECRET", "JWT_PUBLIC_KEY",
		"JWKS_URL", "OIDC_ISSUER", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_USER_CLAIM", "JWT_LEEWAY",
		"AUTH_REQUIRED", "ADMIN_TOKEN",
	} {
		if !bytes.Contains(out, []byte(env)) {
			t.Errorf("--help does not mention %s", env)
		}
	}
}

func TestBadFlagExitsNonZero(t *testing.T) {
	bin := buildBinary(t)
	for _, args := range [][]string{{"--no-such-flag"}, {"--shutdown-timeout", "soon"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%v: got %v, want a non-zero exit", args, err)
		}
		if stderr.Len() == 0 {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
}
