package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timing of the nodes under test. A short heartbeat keeps the tests fast:
// presence must be right within twice this after every fault.
const (
	heartbeatTTL = 3 * time.Second
	adminToken   = "chaos-admin"
)

// binary is the switchboard binary built once for the package by TestMain;
// mailboxFlag is "--mailbox=false" when the binary has that option.
var (
	binary      string
	mailboxFlag string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chaos")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "switchboard")
	build := exec.Command("go", "build", "-o", binary, "github.com/switchboard/switchboard/cmd/switchboard")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// The tests are about what a sender is told: with a mailbox, a direct
	// message to an unreachable user is kept rather than refused, which
	// would hide a false user_offline.
	// CHAOS_MAILBOX=true runs them with the mailbox on instead.
	help, err := exec.Command(binary, "--help").CombinedOutput()
	if err == nil && bytes.Contains(help, []byte("--mailbox")) && os.Getenv("CHAOS_MAILBOX") != "true" {
		mailboxFlag = "--mailbox=false"
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is one switchboard process.
type node struct {
	t    testing.TB
	id   string
	url  string // http://127.0.0.1:PORT
	args []string

	mu     sync.Mutex
	logs   bytes.Buffer
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

var listenLine = regexp.MustCompile(`msg="switchboard listening" addr=(\S+)`)

// startNode runs the binary as node id against redisURL and waits until it
// serves and is ready.
func startNode(t testing.TB, id, redisURL string, extra ...string) *node {
	t.Helper()
	args := []string{
		"--addr", "127.0.0.1:0",
		"--node-id", id,
		"--redis-url", redisURL,
		"--heartbeat-ttl", heartbeatTTL.String(),
		"--shutdown-timeout", "5s",
		"--admin-token", adminToken,
		"--pprof", "true",
	}
	if mailboxFlag != "" {
		args = append(args, mailboxFlag)
	}
	n := &node{t: t, id: id, args: append(args, extra...)}
	n.start()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() || os.Getenv("CHAOS_LOGS") != "" {
			t.Logf("logs of node %s:\n%s", n.id, n.logText())
		}
	})
	return n
}

// start starts the process (again, after kill, on a new port).
func (n *node) start() {
	t := n.t
	t.Helper()
	addr := make(chan string, 1)
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// The parent-death signal fires when the thread that forked the
		// child exits: keep it until the child has been reaped.
		runtime.LockOSThread()
		defer close(exited)
		cmd := exec.Command(binary, n.args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		pipe, err := cmd.StderrPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			started <- err
			return
		}
		n.mu.Lock()
		n.cmd, n.exited = cmd, exited
		n.mu.Unlock()
		started <- nil
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			n.mu.Lock()
			n.logs.WriteString(line + "\n")
			n.mu.Unlock()
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pipe)
		err = cmd.Wait()
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
	}()
	if err := <-started; err != nil {
		t.Fatalf("start node %s: %v", n.id, err)
	}
	select {
	case a := <-addr:
		n.mu.Lock()
		n.url = "http://" + a
		n.mu.Unlock()
	case <-exited:
		t.Fatalf("node %s exited at start:\n%s", n.id, n.logText())
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not start within 20s:\n%s", n.id, n.logText())
	}
	waitFor(t, 20*time.Second, "node "+n.id+" ready", func() bool { return n.ready() })
}

func (n *node) logText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.logs.String()
}

func (n *node) base() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.url
}

// kill sends SIGKILL, as in a crash, and waits for the process to be gone.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // fails only if it already exited
	<-exited
}

// terminate sends SIGTERM and waits up to limit for a clean exit.
func (n *node) terminate(limit time.Duration) time.Duration {
	t := n.t
	t.Helper()
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(limit):
		t.Fatalf("node %s still running %v after SIGTERM", n.id, limit)
	}
	n.mu.Lock()
	err := n.err
	n.mu.Unlock()
	if err != nil {
		t.Fatalf("node %s exited with %v, want 0", n.id, err)
	}
	return time.Since(start)
}

// get performs an HTTP GET with the admin token and returns status and body.
func (n *node) get(path string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base()+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (n *node) ready() bool {
	code, _, err := n.get("/readyz")
	return err == nil && code == http.StatusOK
}

// presence returns the users and connection count of action, as the
// server API reports it (from the store, cluster-wide).
func (n *node) presence(action string) ([]string, int, error) {
	code, b, err := n.get("/api/actions/" + action)
	if err != nil {
		return nil, 0, err
	}
	if code != http.StatusOK {
		return nil, 0, fmt.Errorf("presence: HTTP %d %s", code, b)
	}
	var p struct {
		Users       []string `json:"users"`
		Connections int      `json:"connections"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, 0, err
	}
	return p.Users, p.Connections, nil
}

// metric returns the value of a metric line (name plus labels, exactly as
// exposed), or an error when it is absent.
func (n *node) metric(name string) (float64, error) {
	code, b, err := n.get("/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("metrics: HTTP %d", code)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not exposed", name)
}

// goroutines returns the node's goroutine count (pprof's summary line).
func (n *node) goroutines() (int, error) {
	code, b, err := n.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("pprof: HTTP %d", code)
	}
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("pprof: no total in %.200q", b)
	}
	return strconv.Atoi(string(m[1]))
}

// goroutineDump returns the node's goroutines grouped by stack.
func (n *node) goroutineDump() string {
	_, b, err := n.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// poll returns nil once cond holds, or an error after timeout.
func poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
