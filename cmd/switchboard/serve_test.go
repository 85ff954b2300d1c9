package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// writeCert writes a self-signed certificate for host (and 127.0.0.1) and
// its key into a new directory, and returns their paths.
func writeCert(t *testing.T, host string) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCertTo(t, certFile, keyFile, host)
	return certFile, keyFile
}

// writeCertTo (over)writes a new self-signed pair whose subject is cn.
func writeCertTo(t *testing.T, certFile, keyFile, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// As certbot does: write new files, then rename them into place.
	for _, f := range []struct {
		name string
		typ  string
		der  []byte
	}{{keyFile, "PRIVATE KEY", kder}, {certFile, "CERTIFICATE", der}} {
		tmp := f.name + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.name); err != nil {
			t.Fatal(err)
		}
	}
}

// startNodeLogged is startNode that also returns the node's log.
func startNodeLogged(t *testing.T, args ...string) (*testNode, *syncBuffer) {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0"}, args...)
	cfg, err := parseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	s, err := newServer(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &testNode{t: t, s: s, url: "http://" + s.Addr(), cancel: cancel, done: make(chan error, 1)}
	runningNodes.Add(1) // leak_test.go
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(n.stop)
	waitFor(t, 10*time.Second, "the start-up log line", func() bool { return strings.Contains(logs.String(), "switchboard listening") })
	return n, logs
}

func TestTLS(t *testing.T) {
	certFile, keyFile := writeCert(t, "first")
	n, logs := startNodeLogged(t, "--tls-cert", certFile, "--tls-key", keyFile)
	addr := n.s.Addr()
	if !strings.Contains(logs.String(), "url=https://"+addr+"/") {
		t.Errorf("start-up log does not give the https URL:\n%s", logs)
	}
	trustAny := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test checks which certificate is served
	subject := func() string {
		c, err := tls.Dial("tcp", addr, trustAny)
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := subject(); got != "first" {
		t.Fatalf("certificate %q, want first", got)
	}

	// A real WebSocket client over TLS, verifying the certificate.
	pool := x509.NewCertPool()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pemBytes)
	d := &websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/ws/chat", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	alice := &client{t: t, ws: ws, name: "alice", in: make(chan frame, 100)}
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			alice.in <- frame{b, err}
			if err != nil {
				close(alice.in)
				return
			}
		}
	}()
	alice.send(map[string]any{"type": "online", "user_id": "alice"})
	alice.expect("ready")

	// Plain HTTP over TLS too.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz over TLS: %d", resp.StatusCode)
	}

	// A renewal: new files in place. New handshakes get the new certificate
	// within seconds; the live connection is untouched.
	writeCertTo(t, certFile, keyFile, "renewed")
	waitFor(t, 20*time.Second, "the renewed certificate to be served", func() bool { return subject() == "renewed" })
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("no reload in the log:\n%s", logs)
	}
	alice.send(map[string]any{"type": "ping"})
	alice.expect("pong")
}

func TestHTTPIdleConnectionClosed(t *testing.T) {
	n := startNode(t, "--http-idle-timeout", "1s")
	c, err := net.Dial("tcp", n.s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 2 { // kept alive between the two
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = br.ReadByte()
	if err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %v, want EOF (closed by the server)", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("closed after %v, before the 1s idle timeout", d)
	}
}

func TestHTTPTrickledBodyCutOff(t *testing.T) {
	n := startNode(t, "--http-read-timeout", "1s", "--admin-token", "secret")
	for _, path := range []string{"/healthz", "/api/publish"} {
		c, err := net.Dial("tcp", n.s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		method := "POST"
		if path == "/healthz" {
			method = "GET"
		}
		if _, err := io.WriteString(c, method+" "+path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\nContent-Length: 1000\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// One byte a second would take 1000 s: the server must end it.
		cut := make(chan error, 1)
		go func() {
			for {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte(" ")); err != nil {
					cut <- err
					return
				}
			}
		}()
		go func() {
			_, err := io.Copy(io.Discard, c) // until the server closes
			cut <- err
		}()
		select {
		case <-cut:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: trickled body still held after 20s", path)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%s: cut off after %v", path, d)
		}
		c.Close()
	}
}

func TestPlainGETOnWebSocketPath(t *testing.T) {
	n := startNode(t)
	for _, path := range []string{"/ws", "/ws/chat"} {
		resp, err := http.Get(n.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "WebSocket endpoint") || !strings.Contains(string(body), "docs/protocol.md") {
			t.Errorf("GET %s: %d %q, want 400 saying it is a WebSocket endpoint, with the docs", path, resp.StatusCode, body)
		}
	}
}

func TestRefusedOriginExplained(t *testing.T) {
	n, logs := startNodeLogged(t, "--allowed-origins", "https://app.example")
	hdr := http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+n.s.Addr()+"/ws", hdr)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("dial from a foreign Origin: %v, want 403", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "ALLOWED_ORIGINS=https://evil.example") {
		t.Errorf("403 body %q does not say what to set", body)
	}
	waitFor(t, 5*time.Second, "the refusal in the log", func() bool {
		l := logs.String()
		return strings.Contains(l, "origin=https://evil.example") && strings.Contains(l, "allowed_origins=https://app.example")
	})
	// The allowed Origin still connects.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.s.Addr()+"/ws", http.Header{"Origin": {"https://app.example"}})
	if err != nil {
		t.Fatalf("allowed Origin: %v", err)
	}
	ws.Close()
}

func TestOnlineActionOtherThanPath(t *testing.T) {
	n := startNode(t)
	c := n.dial(t, "/ws/chat", nil)
	c.send(map[string]any{"type": "online", "action": "lobby", "user_id": "alice"})
	m := c.expectError("invalid_action")
	if msg, _ := m["message"].(string); !strings.Contains(msg, "/ws/chat") || strings.Contains(msg, "must be 1-64") {
		t.Errorf("message %q: want it to name the path's action, not call the action malformed", msg)
	}
}

func TestStartLogURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"[::]:8080", "localhost:8080"},
		{"0.0.0.0:8080", "localhost:8080"},
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"[::1]:8080", "[::1]:8080"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := browsable(a); got != tc.want {
			t.Errorf("browsable(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

func TestMetricsAddrAndDemoPageOff(t *testing.T) {
	port := freePort(t)
	n := startNode(t, "--metrics-addr", "127.0.0.1:"+itoa(port), "--pprof", "true", "--demo-page", "false")
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ops := "http://127.0.0.1:" + itoa(port)
	for url, want := range map[string]int{
		n.url + "/":             404,
		n.url + "/metrics":      404,
		n.url + "/debug/pprof/": 404,
		n.url + "/healthz":      200,
		ops + "/metrics":        200,
		ops + "/debug/pprof/":   200,
	} {
		if got := get(url); got != want {
			t.Errorf("GET %s: %d, want %d", url, got, want)
		}
	}
}

func TestReadyzHidesAddresses(t *testing.T) {
	port := freePort(t) // nothing listens there
	n := startNode(t, "--redis-url", "redis://127.0.0.1:"+itoa(port))
	resp, err := http.Get(n.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "REDIS_URL") || strings.Contains(string(body), itoa(port)) {
		t.Errorf("/readyz: %d %q; want 503 naming the component, not the address", resp.StatusCode, body)
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func itoa(n int) string { return strconv.Itoa(n) }

// With Redis unreachable, online gets unavailable quickly, not after the
// whole store timeout.
func TestOnlineUnavailableFastDuringOutage(t *testing.T) {
	port := freePort(t) // nothing listens there
	n := startNode(t, "--redis-url", "redis://127.0.0.1:"+itoa(port))
	// The heartbeat has failed once: the node knows the store is down.
	waitFor(t, 30*time.Second, "a failed heartbeat", func() bool {
		resp, err := http.Get(n.url + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`\nswitchboard_store_errors_total [1-9]`).Match(b)
	})
	c := n.dial(t, "/ws", nil)
	start := time.Now()
	c.send(map[string]any{"type": "online", "action": "chat", "user_id": "alice"})
	c.expectErrorWithin("unavailable", 10*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("unavailable after %v, want within about 1s", d)
	}
}

func TestReadyzNamesKeySource(t *testing.T) {
	port := freePort(t) // nothing serves the JWKS there
	n := startNode(t, "--jwt-secret", "s", "--jwks-url", "http://127.0.0.1:"+itoa(port)+"/jwks.json")
	resp, err := http.Get(n.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "JWKS_URL") || strings.Contains(string(body), itoa(port)) {
		t.Errorf("/readyz: %d %q; want 503 naming JWKS_URL, not its address", resp.StatusCode, body)
	}
}
