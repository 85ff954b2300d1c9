package routing

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Listener wraps ln for an http.Server whose handler serves r. A connection
// whose first request is `GET /ws…` is served by r directly; every other
// connection is passed on to the http.Server unchanged.
//
// Why: net/http gives each connection a 4 KiB read and a 4 KiB write buffer
// from its pools, and a hijacked connection never returns them. For a
// WebSocket server those 8 KiB are garbage on every connect, and the heap they
// inflate stays resident: about 1 KB of an idle connection's ~16 KB. Here
// the handshake is read with a 1 KiB buffer that is dropped at once.
//
// ln may be a TLS listener (crypto/tls.NewListener): the TLS handshake then
// runs on the connection's own goroutine, not the accept loop. (Under TLS
// the saving is lost in crypto/tls's own per-connection state: an idle wss
// connection measured ~30 KB either way.)
//
// Requests served this way get `Connection: close` on any non-101 answer.
// A WebSocket handshake on a kept-alive connection that began with another
// request is served by net/http as before.
func (r *Router) Listener(ln net.Listener) net.Listener {
	l := &upgradeListener{
		Listener: ln,
		r:        r,
		pass:     make(chan net.Conn),
		done:     make(chan struct{}),
		sniffing: make(map[net.Conn]struct{}),
	}
	go l.acceptLoop()
	return l
}

const (
	// handshakeTimeout bounds reading the first request (net/http's
	// ReadHeaderTimeout in cmd/switchboard is the same).
	handshakeTimeout = 10 * time.Second
	// maxHandshakeBytes bounds its request line and headers, as net/http's
	// DefaultMaxHeaderBytes does.
	maxHandshakeBytes = http.DefaultMaxHeaderBytes
)

type upgradeListener struct {
	net.Listener
	r    *Router
	pass chan net.Conn // connections for the http.Server

	mu       sync.Mutex
	err      error                 // why accepting stopped
	done     chan struct{}         // closed when accepting stopped
	sniffing map[net.Conn]struct{} // connections whose first request is being read
}

// Accept returns the next connection that is not a WebSocket handshake.
func (l *upgradeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.pass:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return nil, l.err
	}
}

// Close stops accepting and closes the connections whose first request has
// not arrived yet.
func (l *upgradeListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	for c := range l.sniffing {
		_ = c.Close()
	}
	l.mu.Unlock()
	return err
}

func (l *upgradeListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: back off as
				// net/http does, instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.r.log.Warn("accept failed, retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			l.mu.Lock()
			l.err = err
			close(l.done)
			l.mu.Unlock()
			return
		}
		delay = 0
		l.mu.Lock()
		l.sniffing[c] = struct{}{}
		l.mu.Unlock()
		go l.serve(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serve reads c's first bytes: a WebSocket handshake is served here, any
// other request goes to the http.Server with the bytes read so far.
func (l *upgradeListener) serve(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	lr := &io.LimitedReader{R: c, N: maxHandshakeBytes}
	br := bufio.NewReaderSize(lr, 1024)
	start, err := br.Peek(len("GET /ws "))
	if err == nil && isWebSocketPath(start) {
		l.serveHandshake(c, br, lr)
		return
	}
	l.sniffed(c)
	if len(start) == 0 && err != nil {
		_ = c.Close() // closed or silent before sending anything
		return
	}
	_ = c.SetReadDeadline(time.Time{}) // net/http sets its own
	lr.N = 1<<63 - 1                   // the limit was for the handshake only
	select {
	case l.pass <- &peekedConn{Conn: c, r: br}:
	case <-l.done:
		_ = c.Close()
	}
}

// isWebSocketPath reports whether a request starts `GET /ws ` or
// `GET /ws/`, `GET /ws?`.
func isWebSocketPath(b []byte) bool {
	if !bytes.HasPrefix(b, []byte("GET /ws")) {
		return false
	}
	switch b[len("GET /ws")] {
	case ' ', '/', '?':
		return true
	}
	return false
}

// sniffed marks c's first request as read: Close no longer closes it.
func (l *upgradeListener) sniffed(c net.Conn) {
	l.mu.Lock()
	delete(l.sniffing, c)
	l.mu.Unlock()
}

func (l *upgradeListener) serveHandshake(c net.Conn, br *bufio.Reader, lr *io.LimitedReader) {
	req, err := http.ReadRequest(br)
	l.sniffed(c)
	if err != nil {
		code := http.StatusBadRequest
		if lr.N <= 0 {
			code = http.StatusRequestHeaderFieldsTooLarge
		}
		w := &handshakeResponse{c: c}
		http.Error(w, http.StatusText(code), code)
		w.finish()
		return
	}
	req.RemoteAddr = c.RemoteAddr().String()
	if tc, ok := c.(*tls.Conn); ok { // a TLS listener below this one
		st := tc.ConnectionState()
		req.TLS = &st
	}
	w := &handshakeResponse{c: c, br: br}
	l.r.ServeHTTP(w, req)
	w.finish()
}

// peekedConn is a connection whose first bytes sit in r.
type peekedConn struct {
	net.Conn
	mu sync.Mutex
	r  *bufio.Reader // nil once drained
}

func (p *peekedConn) Read(b []byte) (int, error) {
	p.mu.Lock()
	r := p.r
	if r != nil && r.Buffered() == 0 {
		p.r, r = nil, nil // read from the socket from now on
	}
	p.mu.Unlock()
	if r != nil {
		return r.Read(b)
	}
	return p.Conn.Read(b)
}

// handshakeResponse is the http.ResponseWriter of a handshake served by
// upgradeListener: the upgrader hijacks it, and anything else (an HTTP
// error) is written with `Connection: close`.
type handshakeResponse struct {
	c        net.Conn
	br       *bufio.Reader
	header   http.Header
	code     int
	body     bytes.Buffer
	hijacked bool
}

func (w *handshakeResponse) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *handshakeResponse) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *handshakeResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Hijack hands the connection to the upgrader. Its reader holds nothing
// beyond the request (the upgrader checks), so the upgrader reads the
// socket with its own buffer; the small writer only carries the 101 answer.
func (w *handshakeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked || w.br == nil {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.c, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c, 256)), nil
}

// finish writes the answer of a request that was not upgraded and closes the
// connection.
func (w *handshakeResponse) finish() {
	if w.hijacked {
		return
	}
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	h := w.Header()
	h.Del("Transfer-Encoding")
	h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	h.Set("Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_ = h.Write(&out)
	out.WriteString("\r\n")
	out.Write(w.body.Bytes())
	_ = w.c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_, _ = w.c.Write(out.Bytes())
	if tc, ok := w.c.(interface{ CloseWrite() error }); ok {
		// Let the client read the answer before the close: a reset would
		// discard it.
		_ = tc.CloseWrite()
		_ = w.c.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(w.c, 64<<10))
	}
	_ = w.c.Close()
}
