package routing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// maskedFrame builds a client frame with opcode op and payload.
func maskedFrame(op byte, payload []byte) []byte {
	key := []byte{0x11, 0x22, 0x33, 0x44}
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, key...)
	for i, x := range payload {
		b = append(b, x^key[i%4])
	}
	return b
}

// throughGuard passes stream through a closeGuard in reads of at most
// chunk bytes, as gorilla would read it.
func throughGuard(t *testing.T, stream []byte, chunk int) []byte {
	t.Helper()
	g := &guardState{}
	src := bytes.NewReader(stream)
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := g.read(buf, func(p []byte) (int, error) { return src.Read(p[:min(len(p), chunk)]) })
		out = append(out, buf[:n]...)
		if err == io.EOF && len(g.pend) == 0 {
			return out
		}
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
}

func TestCloseGuard(t *testing.T) {
	text := maskedFrame(0x1, bytes.Repeat([]byte("x"), 300))
	big := maskedFrame(0x2, bytes.Repeat([]byte("y"), 70000))
	ping := maskedFrame(0x9, []byte{0x81}) // a 1-byte ping is fine
	bad := maskedFrame(0x8, []byte{0x03})
	fixed := maskedFrame(0x8, []byte{0x03, 0xea}) // close 1002
	goodClose := maskedFrame(0x8, []byte{0x03, 0xe8, 'o', 'k'})
	for _, tc := range []struct {
		name     string
		in, want []byte
	}{
		{"frames untouched", concat(text, big, ping, goodClose), concat(text, big, ping, goodClose)},
		{"1-byte close", concat(text, bad), concat(text, fixed)},
		{"1-byte close first", bad, fixed},
		{"after a large frame", concat(big, bad, text), concat(big, fixed, text)},
		{"frames stay aligned after a fix", concat(bad, text, ping, bad, goodClose), concat(fixed, text, ping, fixed, goodClose)},
	} {
		for _, chunk := range []int{1, 2, 3, 7, 512, 1 << 20} {
			if got := throughGuard(t, tc.in, chunk); !bytes.Equal(got, tc.want) {
				t.Fatalf("%s, reads of %d: %d bytes, want %d; first difference at %d", tc.name, chunk, len(got), len(tc.want), firstDiff(got, tc.want))
			}
		}
	}
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestLingeringClose: a connection closed while its client is still
// sending (bytes the server never read) ends for the client with what the
// server wrote last and then end of stream, not a reset that would drop
// it; a read on the server after Close fails; the socket is released once
// the client is done.
func TestLingeringClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	g := &closeGuard{TCPConn: sc.(*net.TCPConn)}

	// The client sends what the server will never read.
	if _, err := client.Write(bytes.Repeat([]byte("x"), 64<<10)); err != nil {
		t.Fatal(err)
	}
	// Read one byte: the rest has arrived too, or is arriving, unread.
	if _, err := io.ReadFull(g, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("close frame")); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client read %q, then %v; want the last bytes and end of stream", got, err)
	}
	if string(got) != "close frame" {
		t.Fatalf("client read %q, want %q", got, "close frame")
	}
	// The client, done, closes; the server's socket is released.
	_ = client.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := g.TCPConn.Write([]byte("x")); errors.Is(err, net.ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's socket is still open 5 s after the client closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
