package routing

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseObject(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		typ, to, id string // raw values; "" = absent
	}{
		{name: "empty", in: `{}`},
		{name: "whitespace around", in: " \t\r\n{ } \n"},
		{name: "members", in: `{"type":"chat","to":"bob","id":7}`, typ: `"chat"`, to: `"bob"`, id: `7`},
		{name: "whitespace inside", in: `{ "type" : "chat" , "id" : "a b" }`, typ: `"chat"`, id: `"a b"`},
		{name: "raw values of any type", in: `{"type":1,"to":null,"id":{"a":[1,2]}}`, typ: `1`, to: `null`, id: `{"a":[1,2]}`},
		{name: "escaped keys of other names", in: `{"\u0061":1,"te\u0078t":"x","to":"bob"}`, to: `"bob"`},
		{name: "escaped values kept raw", in: `{"to":"b\u006fb"}`, to: `"b\u006fb"`},
		{name: "nested members ignored", in: `{"a":{"to":"x","type":"y"},"b":[{"id":1}]}`},
		{name: "braces and quotes in strings", in: `{"a":"}\"{[","to":"x\\","b":"\"to\":1"}`, to: `"x\\"`},
		{name: "case variants of other names", in: `{"Text":"x","FROM":"y","Ts":1,"ACTION":2}`},
		{name: "many members", in: `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"to":"bob"}`, to: `"bob"`},
		{name: "numbers", in: `{"id":-1.5e+3,"x":0}`, id: `-1.5e+3`},
		{name: "literals last", in: `{"a":true,"b":false,"id":null}`, id: `null`},
		{name: "deep nesting", in: `{"a":[[[[{"b":[]}]]]],"id":"x"}`, id: `"x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := parseObject([]byte(tc.in))
			if !ok {
				t.Fatalf("parseObject(%s) not ok", tc.in)
			}
			for _, m := range []struct {
				name      string
				got, want string
				present   bool
			}{
				{"type", string(f.typ), tc.typ, f.typ != nil},
				{"to", string(f.to), tc.to, f.to != nil},
				{"id", string(f.id), tc.id, f.id != nil},
			} {
				if m.got != m.want || m.present != (m.want != "") {
					t.Errorf("%s = %q (present %v), want %q", m.name, m.got, m.present, m.want)
				}
			}
		})
	}
}

func TestParseObjectRefuses(t *testing.T) {
	for _, in := range []string{
		``, ` `, `x`, `[]`, `[{}]`, `"{}"`, `1`, `null`, `true`,
		`{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{a:1}`, `{'a':1}`,
		`{"a":1}x`, `{"a":1}{}`, `{} {}`, `{"a":01}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}",
		`{"a":NaN}`, `{"a":1e}`, "\xef\xbb\xbf{}", // a byte order mark is not JSON
		// Ambiguous objects: decoders disagree on what they hold.
		`{"to":"a","to":"b"}`, `{"type":"join","type":"message"}`, `{"x":1,"x":1}`,
		`{"a":1,"\u0061":2}`, `{"from":"a","from":"b"}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"a":18}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"q":18}`,
		`{"To":"bob"}`, `{"TYPE":"join"}`, `{"Id":1}`, `{"SINCE":1}`, `{"Seq":1}`, `{"Token":"t"}`, `{"User_ID":"u"}`,
		`{"t\u006f":"bob"}`, `{"typ\u0065":"x"}`, `{"\u0069d":1}`, `{"\u0074oken":"t"}`,
		`{"ſeq":1}`, `{"ſince":1}`, // long s: Go's encoding/json folds it to s
		`{"to":"bob","TO":"alice"}`,
	} {
		if _, ok := parseObject([]byte(in)); ok {
			t.Errorf("parseObject(%q) ok, want refused", in)
		}
	}
}

// TestStamp checks the exact bytes delivered.
func TestStamp(t *testing.T) {
	prefix := stampPrefix("alice", "chat")
	const head = `{"from":"alice","action":"chat","ts":42`
	tests := []struct {
		name, in, want string
	}{
		{"empty", `{}`, head + `,"type":"message"}`},
		{"whitespace", " {\n} ", head + `,"type":"message"}`},
		{"fields kept as sent", `{"text":"héllo ✓","n":1.50,"o":{"a":[1, 2]},"u":"\u00e9"}`,
			head + `,"text":"héllo ✓","n":1.50,"o":{"a":[1, 2]},"u":"\u00e9","type":"message"}`},
		{"whitespace between members dropped", `{ "a" : 1 , "b" : [ ] }`, head + `,"a":1,"b":[ ],"type":"message"}`},
		{"type kept", `{"type":"typing","x":1}`, head + `,"type":"typing","x":1}`},
		{"spoofed members dropped", `{"from":"m","action":"a","ts":1,"x":1}`, head + `,"x":1,"type":"message"}`},
		{"escaped spoofs dropped", `{"fr\u006fm":"m","\u0061ction":"a","t\u0073":1,"x":1}`, head + `,"x":1,"type":"message"}`},
		{"case variants dropped", `{"From":"m","ACTION":"a","tS":1,"x":1}`, head + `,"x":1,"type":"message"}`},
		{"Unicode case variants dropped", `{"tſ":1,"\u017fts":2,"x":1}`, head + `,"\u017fts":2,"x":1,"type":"message"}`},
		{"similar names kept", `{"fro":1,"fromm":2,"from_":3,"actions":4,"t":5,"tss":6,"to":"x","id":1}`,
			head + `,"fro":1,"fromm":2,"from_":3,"actions":4,"t":5,"tss":6,"to":"x","id":1,"type":"message"}`},
		{"nested spoofs kept", `{"o":{"from":"m","ts":1}}`, head + `,"o":{"from":"m","ts":1},"type":"message"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := parseObject([]byte(tc.in))
			if !ok {
				t.Fatalf("parseObject(%s) not ok", tc.in)
			}
			got := stamp(prefix, []byte(tc.in), f.typ != nil, 42)
			if string(got) != tc.want {
				t.Fatalf("stamp(%s)\n got %s\nwant %s", tc.in, got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("stamp(%s) = %s: not valid JSON", tc.in, got)
			}
		})
	}
}

// TestStampDefeatsCaseInsensitiveDecoders: Go's encoding/json matches names
// case-insensitively (with Unicode folding) and keeps the last value.
func TestStampDefeatsCaseInsensitiveDecoders(t *testing.T) {
	in := []byte(`{"FROM":"mallory","Action":"admin","tſ":1,"TYPE":"error","Type":"ack"}`)
	f, _ := parseObject(in)
	out := stamp(stampPrefix("alice", "chat"), in, f.typ != nil, 42)
	var got struct {
		From   string `json:"from"`
		Action string `json:"action"`
		TS     int64  `json:"ts"`
		Type   string `json:"type"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.From != "alice" || got.Action != "chat" || got.TS != 42 || got.Type != "message" {
		t.Fatalf("decoded %+v from %s", got, out)
	}
}

func TestStampPrefix(t *testing.T) {
	for _, tc := range []struct{ user, action, want string }{
		{"alice", "chat", `{"from":"alice","action":"chat","ts":`},
		{`a"b\c`, "x", `{"from":"a\"b\\c","action":"x","ts":`},
		{"auth0|5f7c", "a.b:c-d", `{"from":"auth0|5f7c","action":"a.b:c-d","ts":`},
		{"é ✓", "x", `{"from":"é ✓","action":"x","ts":`},
	} {
		if got := string(stampPrefix(tc.user, tc.action)); got != tc.want {
			t.Errorf("stampPrefix(%q, %q) = %s, want %s", tc.user, tc.action, got, tc.want)
		}
	}
}

func TestStampAllocatesOnce(t *testing.T) {
	prefix := stampPrefix("alice", "chat")
	for _, in := range []string{`{"text":"hello","to":"bob","id":1}`, `{"from":"x","TYPE":"y","a":[1,{"b":2}]}`} {
		b := []byte(in)
		f, _ := parseObject(b)
		if n := testing.AllocsPerRun(100, func() { stamp(prefix, b, f.typ != nil, 1) }); n != 1 {
			t.Errorf("stamp(%s): %v allocations, want 1", in, n)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{`0`, true},
		{`-0`, true},
		{`7`, true},
		{`-7`, true},
		{`9007199254740992`, true},   // 2^53
		{`-9007199254740992`, true},  // -2^53
		{`9007199254740993`, false},  // 2^53+1
		{`-9007199254740993`, false}, // -(2^53+1)
		{`99999999999999999`, false},
		{`18446744073709551616`, false},
		{`1.5`, false},
		{`1.0`, false},
		{`1e3`, false},
		{`1E3`, false},
		{`-`, false},
		{``, false},
		{`""`, true},
		{`"abc"`, true},
		{`"` + strings.Repeat("x", 64) + `"`, true},
		{`"` + strings.Repeat("x", 65) + `"`, false},
		{`"` + strings.Repeat("é", 64) + `"`, true}, // characters, not bytes
		{`"` + strings.Repeat("é", 65) + `"`, false},
		{`"` + strings.Repeat(`\u00e9`, 64) + `"`, true}, // counted after unescaping
		{`"` + strings.Repeat(`\u00e9`, 65) + `"`, false},
		{`null`, false},
		{`true`, false},
		{`false`, false},
		{`{}`, false},
		{`{"id":1}`, false},
		{`[]`, false},
		{`[1]`, false},
	}
	for _, tc := range tests {
		if got := validID([]byte(tc.raw)); got != tc.want {
			t.Errorf("validID(%s) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

func TestValidAction(t *testing.T) {
	tests := []struct {
		a    string
		want bool
	}{
		{"chat", true},
		{"a", true},
		{"A-Z_a.z:0-9", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"a b", false},
		{"a/b", false},
		{"a\x00", false},
		{"café", false},
		{"a\n", false},
		{"*", false},
		{"a%20b", false},
	}
	for _, tc := range tests {
		if got := ValidAction(tc.a); got != tc.want {
			t.Errorf("ValidAction(%q) = %v, want %v", tc.a, got, tc.want)
		}
	}
}

func TestValidUserID(t *testing.T) {
	tests := []struct {
		u    string
		want bool
	}{
		{"alice", true},
		{"auth0|5f7c8ec7c33c6c004bbafe82", true},
		{"alice@example.com", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{"a b", true},
		{"é ✓ 🎉", true},
		{`"quoted"\`, true},
		{strings.Repeat("a", 256), true},
		{strings.Repeat("é", 128), true}, // 256 bytes
		{strings.Repeat("a", 257), false},
		{strings.Repeat("é", 128) + "a", false},
		{"", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"\x1f", false},
		{"a\x7fb", false},   // DEL
		{"a\u0085b", false}, // C1 control
		{"a\u009fb", false},
		{"a\u00a0b", true},  // no-break space: not a control
		{"a\u2028b", false}, // line separator: breaks JavaScript string literals
		{"a\u2029b", false},
		{"\xff", false}, // not UTF-8
		{"a\xc3", false},
	}
	for _, tc := range tests {
		if got := ValidUserID(tc.u); got != tc.want {
			t.Errorf("ValidUserID(%q) = %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestStringValue(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		ok   bool
	}{
		{`"bob"`, "bob", true},
		{`""`, "", true},
		{`"b\u006fb"`, "bob", true},
		{`"a\"b"`, `a"b`, true},
		{`null`, "", false},
		{`1`, "", false},
		{`{}`, "", false},
		{``, "", false},
	}
	for _, tc := range tests {
		got, ok := stringValue([]byte(tc.raw))
		if got != tc.want || ok != tc.ok {
			t.Errorf("stringValue(%s) = %q, %v; want %q, %v", tc.raw, got, ok, tc.want, tc.ok)
		}
	}
}

// TestFrames checks that every frame the server builds is valid JSON with
// the members the protocol documents.
func TestFrames(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  map[string]any
	}{
		{"error", errorFrame(CodeUserOffline, errorMessages[CodeUserOffline], []byte(`"m1"`), []byte(`"bob"`)),
			map[string]any{"type": "error", "code": "user_offline", "message": errorMessages[CodeUserOffline], "id": "m1", "to": "bob"}},
		{"error without id", errorFrame(CodeInvalidJSON, "a \"quoted\" text", nil, nil),
			map[string]any{"type": "error", "code": "invalid_json", "message": `a "quoted" text`}},
		{"error with a custom code", errorFrame(`my "code"`, "m", []byte(`1`), nil),
			map[string]any{"type": "error", "code": `my "code"`, "message": "m", "id": 1.0}},
		{"ack", ackFrame([]byte(`"x"`), 3), map[string]any{"type": "ack", "id": "x", "delivered": 3.0}},
		{"ack with an integer id", ackFrame([]byte(`-9007199254740992`), 0), map[string]any{"type": "ack", "id": -9007199254740992.0, "delivered": 0.0}},
		{"join", eventFrame("join", `a"b`, "chat"), map[string]any{"type": "join", "user_id": `a"b`, "action": "chat"}},
		{"leave", eventFrame("leave", "bob", "chat"), map[string]any{"type": "leave", "user_id": "bob", "action": "chat"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(tc.frame, &got); err != nil {
				t.Fatalf("%s: %v", tc.frame, err)
			}
			if len(got) != len(tc.want) {
				t.Errorf("%s: %d members, want %d", tc.frame, len(got), len(tc.want))
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: %s = %v, want %v", tc.frame, k, got[k], v)
				}
			}
		})
	}
}

func TestErrorMessagesComplete(t *testing.T) {
	for _, code := range []string{
		CodeMissingAction, CodeInvalidAction, CodeInvalidUser, CodeNotOnline, CodeOnlineTimeout,
		CodeAlreadyOnline, CodeUnauthorized, CodeUserMismatch, CodeTokenExpired, CodeInvalidJSON,
		CodeBinaryUnsupported, CodeInvalidTo, CodeInvalidID, CodeUserOffline, CodeReservedType,
		CodeRateLimited, CodeUnavailable, CodeInternal,
	} {
		if errorMessages[code] == "" {
			t.Errorf("code %s has no message", code)
		}
	}
	for _, typ := range []string{"ready", "ack", "error", "join", "leave", "status", "pong", "refreshed"} {
		if !IsReservedType(typ) {
			t.Errorf("IsReservedType(%q) = false", typ)
		}
	}
	for _, typ := range []string{"message", "online", "presence", "ping", "refresh", "typing", ""} {
		if IsReservedType(typ) {
			t.Errorf("IsReservedType(%q) = true", typ)
		}
	}
}
