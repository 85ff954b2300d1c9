package routing

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/session"
)

// FuzzHandshake feeds arbitrary first bytes to the listener that reads
// WebSocket handshakes: it must never panic or hang, and whatever it answers
// is an HTTP response.
func FuzzHandshake(f *testing.F) {
	const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	upgrade := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" + key
	for _, s := range []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n",
		"GET /ws/room HTTP/1.1\r\nHost: x\r\nOrigin: http://evil\r\n" + upgrade + "\r\n",
		"GET /ws?access_token=abc HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /ws/%zz HTTP/1.1\r\n\r\n",
		"GET /ws HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n\x81\x85abcdhello",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /ws HTTP/1.1\r\n\r\n",
		"GET /ws",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"",
		"GET /ws HTTP/1.0\r\nHost: x\r\n" + upgrade + "\r\n",
		"GET /ws HTTP/1.1\r\n" + upgrade + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4, ::1, garbage\r\nX-Forwarded-For: 10.0.0.1\r\n" + upgrade + "\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n\x88\x81abcd\x03",
		"GET /ws HTTP/1.1\r\nHost: x\r\n" + upgrade + "\r\n\x89\x80abcd\x89\x80abcd\x88\xfeabcd",
	} {
		f.Add([]byte(s))
	}
	r, err := New(Config{Node: "fuzz", Store: session.NewMemoryStore(), Broker: NewMemoryHub().Broker("fuzz"),
		Registerer: prometheus.NewRegistry(), OnlineTimeout: time.Second,
		Limits: Limits{HandshakeRate: 1e9, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}})
	if err != nil {
		f.Fatal(err)
	}
	l := &upgradeListener{r: r, pass: make(chan net.Conn), done: make(chan struct{}), sniffing: make(map[net.Conn]struct{})}
	go func() {
		for c := range l.pass {
			_ = c.Close() // not a handshake: net/http's business
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, req []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan struct{})
		go func() {
			defer close(served)
			l.serve(server)
		}()
		_ = client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			_, _ = client.Write(req)
			_ = client.(*net.TCPConn).CloseWrite() // all the client has to say
		}()
		var out bytes.Buffer
		buf := make([]byte, 4096)
		for !bytes.Contains(out.Bytes(), []byte("\r\n\r\n")) {
			n, err := client.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				break
			}
		}
		_ = client.Close() // ends an upgraded session too
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Fatalf("serve did not return for %q", req)
		}
		if out.Len() > 0 && !bytes.HasPrefix(out.Bytes(), []byte("HTTP/1.1 ")) {
			t.Fatalf("answer to %q is not HTTP: %q", req, out.Bytes())
		}
	})
}
