package routing

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseStamp feeds arbitrary bytes through parseObject and, when it
// accepts them, through stamp, and checks the contract of both: parseObject
// accepts exactly the JSON objects and finds the members a decoder would;
// stamp's output is a JSON object with from, action and ts set by the server
// exactly once, no case variant of them or of type, and every other member
// of the input as sent, in order. The seed corpus is in
// testdata/fuzz/FuzzParseStamp; run with
//
//	go test -fuzz FuzzParseStamp -fuzztime 60s ./routing
func FuzzParseStamp(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"type":"message","to":"bob","id":1,"text":"hi"}`,
		`{"from":"mallory","action":"admin","ts":1}`,
		`{"fr\u006fm":"m","FROM":"m","tſ":1,"TYPE":"ready"}`,
		` {"a" : [1, {"b": "}\"{"}] , "to" : null } `,
		`[{"type":"online"}]`,
		`{"a":1}{"b":2}`,
		`{"a":"\xff"}`,
	} {
		f.Add([]byte(s), "alice")
	}
	f.Fuzz(func(t *testing.T, b []byte, user string) {
		ms, isObject := decodeMembers(b)
		fl, ok := parseObject(b)
		if want := isObject && !ambiguousObject(ms); ok != want {
			t.Fatalf("parseObject(%q) ok = %v, want %v (a JSON object: %v)", b, ok, want, isObject)
		}
		if !ok {
			return
		}
		// parseObject finds the last member of each name, as decoders do.
		for _, x := range []struct {
			name string
			raw  []byte
		}{{"type", fl.typ}, {"to", fl.to}, {"id", fl.id}} {
			want, found := last(ms, x.name)
			if (x.raw != nil) != found || string(x.raw) != want {
				t.Fatalf("parseObject(%q): %s = %q, want %q (present %v)", b, x.name, x.raw, want, found)
			}
		}
		// The readers of raw values must not panic on anything parseObject returns.
		if fl.id != nil {
			validID(fl.id)
		}
		if s, ok := stringValue(fl.to); ok {
			ValidUserID(s)
		}

		if !ValidUserID(user) {
			user = "alice"
		}
		const ts = 1700000000000
		out := stamp(stampPrefix(user, "chat"), b, fl.typ != nil, ts)
		got, ok := decodeMembers(out)
		if !ok {
			t.Fatalf("stamp(%q) = %q: not a JSON object", b, out)
		}
		wantFirst := []jsonMember{{key: "from", raw: quote(user)}, {key: "action", raw: `"chat"`}, {key: "ts", raw: strconv.Itoa(ts)}}
		if len(got) < 3 {
			t.Fatalf("stamp(%q) = %q: fewer than 3 members", b, out)
		}
		for i, w := range wantFirst {
			if got[i].key != w.key || !sameJSON(got[i].raw, w.raw) {
				t.Fatalf("stamp(%q) = %q: member %d is %s:%s, want %s:%s", b, out, i, got[i].key, got[i].raw, w.key, w.raw)
			}
		}
		// Every other member of the input, as sent and in order; then the
		// type when the input had none.
		var want []jsonMember
		for _, m := range ms {
			if !serverName(m.key) {
				want = append(want, m)
			}
		}
		if fl.typ == nil {
			want = append(want, jsonMember{key: "type", raw: `"message"`})
		}
		rest := got[3:]
		if len(rest) != len(want) {
			t.Fatalf("stamp(%q) = %q: %d members after ts, want %d", b, out, len(rest), len(want))
		}
		for i := range want {
			if rest[i].key != want[i].key || rest[i].raw != want[i].raw {
				t.Fatalf("stamp(%q) = %q: member %d is %s:%s, want %s:%s", b, out, i+3, rest[i].key, rest[i].raw, want[i].key, want[i].raw)
			}
		}
		for _, m := range rest {
			if serverName(m.key) {
				t.Fatalf("stamp(%q) = %q: %q kept", b, out, m.key)
			}
		}
	})
}

// jsonMember is a top-level member of a JSON object: its name (unescaped),
// its value as it appears in the text, and whether the name was written
// with escapes.
type jsonMember struct {
	key     string
	raw     string
	escaped bool
}

// ambiguousObject reports whether decoders may disagree on an object with
// members ms: a name twice, or a protocol name spelled with escapes or in
// another case (Unicode simple folding, as Go's encoding/json matches).
func ambiguousObject(ms []jsonMember) bool {
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.key] {
			return true
		}
		seen[m.key] = true
		for _, p := range []string{"to", "type", "id", "since", "seq", "token", "user_id"} {
			if strings.EqualFold(m.key, p) && (m.escaped || m.key != p) {
				return true
			}
		}
	}
	return false
}

// decodeMembers returns the top-level members of b, duplicates included, and
// whether b is exactly one JSON object. It relies on encoding/json only,
// independently of the scanner under test.
func decodeMembers(b []byte) ([]jsonMember, bool) {
	if !json.Valid(b) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var ms []jsonMember
	for dec.More() {
		start := dec.InputOffset() // before the name, perhaps before a comma
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		escaped := bytes.IndexByte(b[start:dec.InputOffset()], '\\') >= 0
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		ms = append(ms, jsonMember{tok.(string), string(raw), escaped})
	}
	return ms, true
}

// last returns the value of the last member named name.
func last(ms []jsonMember, name string) (string, bool) {
	v, found := "", false
	for _, m := range ms {
		if m.key == name {
			v, found = m.raw, true
		}
	}
	return v, found
}

// serverName reports whether stamp must drop a member of that name: the
// server's from, action and ts in any case, and type in another case.
func serverName(k string) bool {
	for _, n := range []string{"from", "action", "ts"} {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return strings.EqualFold(k, "type") && k != "type"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// sameJSON reports whether two JSON texts decode to the same value.
func sameJSON(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && x == y
}
