package routing

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// closeGuard reads a WebSocket connection's frames on their way to gorilla
// and fixes the one malformed frame gorilla takes for a valid one: a close
// frame with a 1-byte payload. RFC 6455 5.5.1 says a close payload starts
// with a 2-byte code, so such a frame is a protocol error, to be answered
// with 1002; gorilla reads it as a close without a code and answers with an
// empty close frame. closeGuard rewrites the payload to the code 1002, which
// gorilla echoes: the client gets close 1002.
//
// It only looks at frame headers (payloads are skipped by length). Over
// plain TCP it embeds *net.TCPConn, so that gorilla's vectored writes keep
// working; tlsCloseGuard serves any other connection (wss://).
type closeGuard struct {
	*net.TCPConn
	guardState
}

// tlsCloseGuard is a closeGuard for a connection that is not a
// *net.TCPConn (TLS).
type tlsCloseGuard struct {
	net.Conn
	guardState
}

// guardState follows the frames read from a connection.
type guardState struct {
	hdr  [14]byte // the header being read
	hn   uint8    // bytes of hdr read
	need uint8    // header length, known once its second byte is read
	fix  bool     // the header is a 1-byte close: fix its payload
	// closing (closeGuard only) is lingerClosed once Close was called, plus
	// the reads in progress. (Here, in the padding after fix, it costs a
	// connection no memory.)
	closing atomic.Int32
	skip    int64  // payload bytes left in the current frame
	pend    []byte // bytes to return before reading the socket again
}

// guardHijack wraps w so that the connection the upgrader hijacks is read
// through a closeGuard.
type guardHijack struct {
	http.ResponseWriter
}

func (g guardHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(g.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return &closeGuard{TCPConn: tc}, rw, nil
	}
	return &tlsCloseGuard{Conn: c}, rw, nil
}

func (g *closeGuard) Read(p []byte) (int, error) {
	defer g.closing.Add(-1)
	if g.closing.Add(1)&lingerClosed != 0 {
		return 0, net.ErrClosed
	}
	return g.read(p, g.TCPConn.Read)
}

// The lingering close: how long, and how many bytes, a closed connection
// still reads (and drops) what its client sends.
const (
	lingerTimeout  = time.Second
	lingerMaxBytes = 1 << 20
	lingerClosed   = 1 << 30 // in guardState.closing: Close was called
)

// Close closes the connection without losing what was written to it last
// (the close frame, RST-safe as RFC 6455 7.1.1 and nginx's lingering close
// intend): a socket closed while its client's bytes wait unread is reset,
// and a reset drops what it had not yet sent, so a client still sending
// (a flood, a message over the size limit) would get no close frame. The
// write side is shut down at once (FIN after the queued bytes); what the
// client still sends is read and dropped for up to lingerTimeout or
// lingerMaxBytes; then the socket is closed.
func (g *closeGuard) Close() error {
	for {
		v := g.closing.Load()
		if v&lingerClosed != 0 {
			return net.ErrClosed
		}
		if g.closing.CompareAndSwap(v, v|lingerClosed) {
			break
		}
	}
	// Wake the reader: from here on the client's bytes are dropped, never
	// parsed. (Its deadline stays in the past until it has returned.)
	_ = g.TCPConn.SetReadDeadline(time.Now())
	if err := g.TCPConn.CloseWrite(); err != nil {
		return g.TCPConn.Close()
	}
	go g.linger()
	return nil
}

func (g *closeGuard) linger() {
	deadline := time.Now().Add(lingerTimeout)
	for g.closing.Load() != lingerClosed && time.Now().Before(deadline) { // a read in progress
		time.Sleep(time.Millisecond)
	}
	_ = g.TCPConn.SetReadDeadline(deadline)
	_, _ = io.Copy(io.Discard, io.LimitReader(g.TCPConn, lingerMaxBytes))
	_ = g.TCPConn.Close()
}

func (g *tlsCloseGuard) Read(p []byte) (int, error) { return g.read(p, g.Conn.Read) }

// read reads from src what Read returns.
func (g *guardState) read(p []byte, src func([]byte) (int, error)) (int, error) {
	var n int
	var err error
	if len(g.pend) > 0 {
		n = copy(p, g.pend)
		g.pend = g.pend[n:]
		if len(g.pend) == 0 {
			g.pend = nil
		}
	} else {
		n, err = src(p)
	}
	return g.scan(p, n), err
}

// scan follows the frames in p[:n] and returns how many bytes of p to hand
// on: fewer than n when a fixed payload needs a byte more (the rest waits
// in pend).
func (g *guardState) scan(p []byte, n int) int {
	for i := 0; i < n; {
		if g.skip > 0 {
			k := min(g.skip, int64(n-i))
			g.skip -= k
			i += int(k)
			continue
		}
		if g.fix && g.hn == 0 {
			// The 1-byte payload, masked with hdr[2:6]: replace it by
			// the two bytes of 1002, the second one inserted.
			g.fix = false
			const code = 1002
			p[i] = byte(code>>8) ^ g.hdr[2]
			second := byte(code&0xff) ^ g.hdr[3]
			g.pend = append(append([]byte{second}, p[i+1:n]...), g.pend...)
			g.skip = 1 // the inserted byte is payload
			return i + 1
		}
		b := p[i]
		g.hdr[g.hn] = b
		g.hn++
		i++
		if g.hn == 2 {
			g.need = 2
			switch b & 0x7f {
			case 126:
				g.need += 2
			case 127:
				g.need += 8
			}
			if b&0x80 != 0 {
				g.need += 4
			}
			if g.hdr[0]&0x0f == 0x8 && b == 0x80|1 { // masked close, length 1
				p[i-1] = 0x80 | 2
				g.fix = true
			}
		}
		if g.hn < 2 || g.hn < g.need {
			continue
		}
		var length int64
		switch l := g.hdr[1] & 0x7f; l {
		case 126:
			length = int64(g.hdr[2])<<8 | int64(g.hdr[3])
		case 127:
			for _, x := range g.hdr[2:10] {
				length = length<<8 | int64(x)
			}
		default:
			length = int64(l)
		}
		if g.fix {
			copy(g.hdr[2:6], g.hdr[g.need-4:g.need]) // the masking key
			length = 0                               // the payload is fixed above
		}
		g.hn, g.need = 0, 0
		g.skip = max(length, 0) // a negative length is gorilla's to refuse
	}
	return n
}
