package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// client dials WebSocket connections from a rotating set of local source
// addresses, so that more than one address's worth of ephemeral ports
// (~28k on Linux) can be open at once.
type client struct {
	cfg    *Config
	dialer websocket.Dialer
	header http.Header
	next   atomic.Uint64
}

func newClient(cfg *Config) *client {
	cl := &client{cfg: cfg, header: http.Header{}}
	if cfg.Origin != "" {
		cl.header.Set("Origin", cfg.Origin)
	}
	cl.dialer = websocket.Dialer{
		HandshakeTimeout: cfg.DialTimeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			src := cfg.Sources[int(cl.next.Add(1)%uint64(len(cfg.Sources)))]
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &batchConn{Conn: c}, nil
		},
	}
	return cl
}

// Conn is one bound client connection (after ready).
type Conn struct {
	ws     *websocket.Conn
	ID     string
	User   string
	Action string
}

// dialError classifies a failed connect for the report.
type dialError struct {
	kind string // "dial", "handshake", "online:<code>", "timeout", ...
	err  error
}

func (e *dialError) Error() string { return e.kind + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func errKind(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		return de.kind
	}
	return "other"
}

type reply struct {
	Type         string `json:"type"`
	Code         string `json:"code"`
	ConnectionID string `json:"connection_id"`
	UserID       string `json:"user_id"`
	Action       string `json:"action"`
}

// connect dials url, sends online and waits for ready, within the dial
// timeout.
func (cl *client) connect(ctx context.Context, url, action, user string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cl.cfg.DialTimeout)
	defer cancel()
	ws, resp, err := cl.dialer.DialContext(ctx, url, cl.header)
	if err != nil {
		if resp != nil {
			return nil, &dialError{"handshake_" + strconv.Itoa(resp.StatusCode), err}
		}
		if ctx.Err() != nil {
			return nil, &dialError{"timeout", err}
		}
		return nil, &dialError{"dial", err}
	}
	deadline, _ := ctx.Deadline()
	_ = ws.SetReadDeadline(deadline)
	_ = ws.SetWriteDeadline(deadline)
	online, _ := json.Marshal(map[string]string{"type": "online", "action": action, "user_id": user})
	if err := ws.WriteMessage(websocket.TextMessage, online); err != nil {
		ws.Close()
		return nil, &dialError{"online_write", err}
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ws.Close()
			if ctx.Err() != nil {
				return nil, &dialError{"timeout", err}
			}
			return nil, &dialError{"online_read", err}
		}
		var r reply
		if err := json.Unmarshal(data, &r); err != nil {
			ws.Close()
			return nil, &dialError{"online_json", err}
		}
		switch r.Type {
		case "ready":
			_ = ws.SetReadDeadline(time.Time{})
			_ = ws.SetWriteDeadline(time.Time{})
			return &Conn{ws: ws, ID: r.ConnectionID, User: user, Action: action}, nil
		case "error":
			ws.Close()
			return nil, &dialError{"online_" + r.Code, fmt.Errorf("server refused online: %s", data)}
		}
		// Anything else before ready (none expected) is skipped.
	}
}

// readLoop calls onFrame for every data frame until the connection fails or
// closes. onFrame must not keep the slice.
func (c *Conn) readLoop(onFrame func([]byte)) error {
	var buf bytes.Buffer
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			return err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		onFrame(buf.Bytes())
	}
}

// write sends one text frame; only one goroutine may call it at a time.
func (c *Conn) write(b []byte) error { return c.ws.WriteMessage(websocket.TextMessage, b) }

// hold makes the following writes accumulate in memory until flush, so a
// sender with several messages ready pays one write syscall for all of
// them (the server still sees separate frames).
func (c *Conn) hold() {
	if bc, ok := c.ws.UnderlyingConn().(*batchConn); ok {
		bc.mu.Lock()
		bc.holding = true
		bc.mu.Unlock()
	}
}

// flush writes what accumulated since hold in one syscall.
func (c *Conn) flush() error {
	if bc, ok := c.ws.UnderlyingConn().(*batchConn); ok {
		return bc.flush()
	}
	return nil
}

// batchConn is a net.Conn whose writes can be held and flushed together.
// gorilla/websocket serialises its own writes; mu also covers flush, which
// runs outside gorilla's lock.
type batchConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	buf     []byte
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holding {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holding = false
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(b.buf)
	if cap(b.buf) > 64<<10 {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// Close sends a normal close frame (unless abrupt) and closes the socket.
func (c *Conn) Close(abrupt bool) {
	if !abrupt {
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}
	_ = c.ws.Close()
}

// appendMessage appends a message of about size bytes:
// {"type":"message","to":"<to>","ts0":<ts0>,"pad":"xxx…"}; without to when
// to is empty. ts0 is the intended send time in ns since the run's epoch
// (small enough to survive a float64 round trip in the server).
func appendMessage(b []byte, to string, ts0 int64, size int) []byte {
	start := len(b)
	b = append(b, `{"type":"message",`...)
	if to != "" {
		b = append(b, `"to":`...)
		b = strconv.AppendQuote(b, to)
		b = append(b, ',')
	}
	b = append(b, `"ts0":`...)
	b = strconv.AppendInt(b, ts0, 10)
	b = append(b, `,"pad":"`...)
	for n := size - (len(b) - start) - 2; n > 0; n-- {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// Frame kinds returned by classify.
const (
	frameOther = iota
	frameMessage
	frameError
)

var (
	ts0Key   = []byte(`"ts0":`)
	errorKey = []byte(`"error"`)
)

// classify looks at a received frame as cheaply as it can: a frame with a
// ts0 field is a benchmark message (only the number is parsed); a frame
// mentioning "error" is decoded to get its code; anything else (join,
// leave, ack) is other.
func classify(b []byte) (kind int, ts0 int64, code string) {
	if bytes.Contains(b, errorKey) {
		var r reply
		if json.Unmarshal(b, &r) == nil && r.Type == "error" {
			if r.Code == "" {
				r.Code = "unknown"
			}
			return frameError, 0, r.Code
		}
	}
	if v, ok := parseTS0(b); ok {
		return frameMessage, v, ""
	}
	return frameOther, 0, ""
}

// parseTS0 finds "ts0": and parses the number after it, integer fast path,
// float (1.5e+11) as a fallback.
func parseTS0(b []byte) (int64, bool) {
	i := bytes.Index(b, ts0Key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(ts0Key):]
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	var v int64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	if n == 0 {
		return 0, false
	}
	if n < len(b) && (b[n] == '.' || b[n] == 'e' || b[n] == 'E') {
		end := n
		for end < len(b) && bytes.IndexByte([]byte("0123456789.eE+-"), b[end]) >= 0 {
			end++
		}
		f, err := strconv.ParseFloat(string(b[:end]), 64)
		if err != nil {
			return 0, false
		}
		return int64(f), true
	}
	return v, true
}
