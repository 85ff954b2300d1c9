// Package redistest runs private redis-server processes for tests: one
// standalone server (Start) or a three-master Redis Cluster (StartCluster),
// each on free loopback ports, with no persistence, killed when the test
// ends. It never touches a Redis that the test did not start.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timing of the helpers.
const (
	// startTimeout bounds how long a server may take to answer PING.
	startTimeout = 10 * time.Second
	// pollInterval is how often a condition is re-checked while waiting.
	pollInterval = 5 * time.Millisecond
	// startAttempts is how often Start retries when a port it picked was
	// taken by someone else before redis-server could bind it.
	startAttempts = 5
)

const notFound = "redis-server not found: install it with `apt-get install -y redis-server`"

// Server is a redis-server process owned by one test. Its methods are safe
// for concurrent use.
type Server struct {
	t     testing.TB
	base  string   // parent of each run's --dir
	extra []string // extra redis-server arguments (cluster mode)

	mu     sync.Mutex
	port   int
	proc   *process
	client *redis.Client
}

// Start runs a private redis-server on a free loopback port and returns
// once it answers PING. DEBUG is enabled for local connections, so tests can
// stall the server with DEBUG SLEEP. The server is killed when the test ends. A missing
// redis-server binary fails the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, nil)
	if err := s.startFresh(); err != nil {
		t.Fatal(err)
	}
	return s
}

func newServer(t testing.TB, extra func(dir string) []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal(notFound)
	}
	s := &Server{t: t, base: t.TempDir()}
	if extra != nil {
		s.extra = extra(s.base)
	}
	t.Cleanup(s.Stop)
	return s
}

// startFresh picks a free port and starts the server on it, retrying with
// another port if the one picked was taken in between.
func (s *Server) startFresh() error {
	var err error
	for range startAttempts {
		var port int
		if port, err = freePort(); err != nil {
			return err
		}
		if err = s.startOn(port); err == nil || !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

var errAddrInUse = errors.New("redistest: address already in use")

// startOn starts redis-server on port in a new empty directory and waits
// for it to answer PING.
func (s *Server) startOn(port int) error {
	dir, err := os.MkdirTemp(s.base, "run")
	if err != nil {
		return err
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--logfile", "",
		// DEBUG SLEEP stalls the server in fault tests; loopback only.
		"--enable-debug-command", "local",
	}
	args = append(args, s.extra...)
	logPath := filepath.Join(dir, "redis.log")
	p, err := startProcess("redis-server", args, dir, logPath)
	if err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitPing(addr, p, startTimeout); err != nil {
		p.kill()
		out, _ := os.ReadFile(logPath)
		if strings.Contains(string(out), "Address already in use") {
			return fmt.Errorf("%w: port %d", errAddrInUse, port)
		}
		return fmt.Errorf("redistest: redis-server on %s: %w\n%s", addr, err, out)
	}
	s.mu.Lock()
	s.port, s.proc = port, p
	s.mu.Unlock()
	return nil
}

// Addr returns the server's "127.0.0.1:PORT".
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's "redis://127.0.0.1:PORT", a REDIS_URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Stop kills the server and waits for it to exit, as in an outage. It is
// idempotent; Restart brings the server back.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart kills the server if it runs and starts it again, empty, on the
// same port, as a Redis that restarted without persistence. Clients keep
// their address and reconnect. On a cluster member it yields an empty node
// that is no longer part of the cluster.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.mu.Lock()
	port := s.port
	s.mu.Unlock()
	// The port was ours a moment ago; retry briefly in case the kernel has
	// not released it yet.
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.startOn(port)
		if err == nil {
			return
		}
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			s.t.Fatal(err)
		}
		<-time.After(pollInterval)
	}
}

// Client returns a go-redis client for assertions on the server's data,
// created on first use and closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))})
		c := s.client
		s.t.Cleanup(func() { _ = c.Close() })
	}
	return s.client
}

// Do runs one raw command, e.g. s.Do("HGETALL", "sb:conn:c1"), with a
// deadline of a few seconds. It works in t.Cleanup functions too.
func (s *Server) Do(args ...any) (any, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.t.Context()), startTimeout)
	defer cancel()
	return s.Client().Do(ctx, args...).Result()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitPing polls addr with a raw PING until it answers +PONG, p exits, or
// timeout passes.
func waitPing(addr string, p *process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		if last = ping(addr); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before answering PING: %v", p.err)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within %s: %w", timeout, last)
		}
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// process is a child process started on a locked OS thread, so that a
// parent-death signal (Linux) fires when the test binary dies rather than
// when the Go runtime happens to retire the thread that forked it.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // Wait's result, set before done is closed
}

func startProcess(name string, args []string, dir, logPath string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &process{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread lives until the child has been reaped,
		// then exits with this goroutine.
		runtime.LockOSThread()
		defer close(p.done)
		defer logf.Close()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.cmd = cmd
		started <- nil
		p.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// kill sends SIGKILL and waits until the process has been reaped.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill() // fails only if it already exited; done tells
	<-p.done
}
