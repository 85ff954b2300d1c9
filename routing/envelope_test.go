package routing

import (
	"bytes"
	"testing"
)

// TestEnvelopeWire: an envelope crosses between nodes whole, its seq field
// holding a mailbox seq, a history entry id, or nothing; a malformed one
// is refused, not misread.
func TestEnvelopeWire(t *testing.T) {
	t.Parallel()
	for _, e := range []Envelope{
		{Kind: KindMessage, Origin: "n1", Exclude: "c1", Action: "chat", Payload: []byte(`{"type":"message"}`)},
		{Kind: KindMessage, Origin: "n1", Action: "chat", User: "bob", Seq: 42, Payload: []byte(`{}`)},
		{Kind: KindJoin, Origin: "n1", Action: "chat", Hist: HistID{Ms: 1_765_000_000_000, Seq: 7}, Payload: []byte(`{}`)},
		{Kind: KindDisconnect, Origin: "n2", Node: "n1", Conn: "c9", Payload: []byte("bye")},
	} {
		b, _ := e.MarshalBinary()
		var got Envelope
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.Kind != e.Kind || got.Origin != e.Origin || got.Exclude != e.Exclude || got.Action != e.Action ||
			got.User != e.User || got.Conn != e.Conn || got.Node != e.Node || got.Seq != e.Seq || got.Hist != e.Hist ||
			!bytes.Equal(got.Payload, e.Payload) {
			t.Errorf("round trip of %+v gave %+v", e, got)
		}
	}
	// The history id travels in the Conn field, which nodes that predate
	// it ignore in a message: to them it is a message with Conn set.
	h := Envelope{Kind: KindMessage, Origin: "n1", Action: "chat", Hist: HistID{Ms: 17, Seq: 2}, Payload: []byte(`{}`)}
	b, _ := h.MarshalBinary()
	b[0] = KindDisconnect // read as a kind whose Conn means nothing else
	var old Envelope
	if err := old.UnmarshalBinary(b); err != nil || old.Conn != "17-2" || old.Seq != 0 || old.Action != "chat" || string(old.Payload) != `{}` {
		t.Errorf("the history id's place on the wire: %+v, %v; want Conn 17-2 and the rest unchanged", old, err)
	}
	for _, conn := range []string{"c1", "17", "17-", "-2", "1-2-3"} {
		b := (&Envelope{Kind: KindLeave, Origin: "n1", Action: "chat", Conn: conn}).AppendHeader(nil)
		var e Envelope
		if err := e.UnmarshalBinary(append(b, 0)); err == nil {
			t.Errorf("a leave with Conn %q accepted: %+v", conn, e)
		}
	}
	header := (&Envelope{Kind: KindMessage, Origin: "n1", Action: "chat"}).AppendHeader(nil)
	for _, seq := range []string{"0", "-1", "1-", "-", "x", "1-2", "99999999999999999999", "9223372036854775808"} {
		b := append(append(append([]byte{}, header...), byte(len(seq))), seq...)
		var e Envelope
		if err := e.UnmarshalBinary(append(b, '{', '}')); err == nil {
			t.Errorf("seq field %q accepted: seq %d, hist %v", seq, e.Seq, e.Hist)
		}
	}
	if !(HistID{Ms: 1, Seq: 9}).Less(HistID{Ms: 2}) || (HistID{Ms: 2}).Less(HistID{Ms: 1, Seq: 9}) || !(HistID{Ms: 2, Seq: 1}).Less(HistID{Ms: 2, Seq: 2}) {
		t.Error("HistID.Less does not order by ms, then seq")
	}
}

// FuzzEnvelope: no input makes the decoder panic, and what it accepts
// encodes back to an envelope that decodes the same.
func FuzzEnvelope(f *testing.F) {
	for _, e := range []Envelope{
		{Kind: KindMessage, Origin: "n1", Action: "chat", Seq: 3, Payload: []byte(`{}`)},
		{Kind: KindLeave, Origin: "n1", Action: "chat", Hist: HistID{Ms: 5, Seq: 1}, Payload: []byte(`{}`)},
	} {
		b, _ := e.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Envelope
		if e.UnmarshalBinary(b) != nil {
			return
		}
		again, _ := e.MarshalBinary()
		var e2 Envelope
		if err := e2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded envelope refused: %v", err)
		}
		if e2.Seq != e.Seq || e2.Hist != e.Hist || e2.Origin != e.Origin || !bytes.Equal(e2.Payload, e.Payload) {
			t.Fatalf("re-encoded %+v decodes as %+v", e, e2)
		}
	})
}
