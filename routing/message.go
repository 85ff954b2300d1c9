package routing

import (
	"bytes"
	"encoding/json"
	"iter"
	"strconv"
	"unicode/utf8"
)

// Error codes sent to clients (docs/protocol.md, "Errors").
const (
	CodeMissingAction     = "missing_action"
	CodeInvalidAction     = "invalid_action"
	CodeInvalidUser       = "invalid_user"
	CodeNotOnline         = "not_online"
	CodeOnlineTimeout     = "online_timeout"
	CodeAlreadyOnline     = "already_online"
	CodeUnauthorized      = "unauthorized"
	CodeUserMismatch      = "user_mismatch"
	CodeTokenExpired      = "token_expired"
	CodeInvalidJSON       = "invalid_json"
	CodeBinaryUnsupported = "binary_unsupported"
	CodeInvalidTo         = "invalid_to"
	CodeInvalidID         = "invalid_id"
	CodeUserOffline       = "user_offline"
	CodeReservedType      = "reserved_type"
	CodeRateLimited       = "rate_limited"
	CodeUnavailable       = "unavailable"
	CodeInternal          = "internal"
	// Limits and moderation (docs/operations.md).
	CodeTooManyConnections = "too_many_connections"
	CodeBanned             = "banned"
)

// Limits of the wire protocol.
const (
	maxActionLen = 64
	maxUserIDLen = 256
	maxIDLen     = 64
	maxSafeInt   = 1 << 53
)

// reserved are the types the server itself sends; clients may not send them.
var reserved = map[string]bool{
	"ready": true, "ack": true, "error": true, "join": true, "leave": true,
	"status": true, "pong": true, "refreshed": true,
}

// IsReservedType reports whether typ is a type only the server may send.
func IsReservedType(typ string) bool { return reserved[typ] }

// ValidAction reports whether a is 1–64 characters of A-Z a-z 0-9 _ . : -.
func ValidAction(a string) bool {
	if len(a) == 0 || len(a) > maxActionLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// ValidUserID reports whether u is 1–256 bytes of UTF-8 without control characters.
func ValidUserID(u string) bool {
	if len(u) == 0 || len(u) > maxUserIDLen || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

// fields holds the raw values of the top-level members the server reads from
// a client message. Slices alias the input; nil means absent.
type fields struct {
	typ, to, id []byte
}

// scanMember reads the object member starting at b[i] (after '{' or ',',
// whitespace allowed). It returns the raw key (with quotes), the raw value,
// and the index just past the member's trailing ',' or '}'. done is true when
// the object ends at i. b must already be valid JSON.
func scanMember(b []byte, i int) (key, val []byte, next int, done bool) {
	i = skipWS(b, i)
	if b[i] == '}' {
		return nil, nil, i + 1, true
	}
	ks := i
	i = skipString(b, i)
	key = b[ks:i]
	i = skipWS(b, i)
	i = skipWS(b, i+1) // ':'
	vs := i
	i = skipValue(b, i)
	val = b[vs:i]
	i = skipWS(b, i)
	return key, val, i + 1, b[i] == '}'
}

// members yields the raw key (with quotes) and raw value of each top-level
// member of the JSON object b, in order. b must have passed parseObject.
func members(b []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(key, val []byte) bool) {
		i := skipWS(b, 0) + 1
		for {
			key, val, next, done := scanMember(b, i)
			if done && key == nil {
				return
			}
			if !yield(key, val) || done {
				return
			}
			i = next
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// keyIs reports whether the raw JSON key (with quotes) equals name, after
// unescaping ("fr\u006fm" is "from").
func keyIs(key []byte, name string) bool {
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// parseObject checks that b is one unambiguous JSON object and reads the
// members the server needs. ok is false when b is not valid JSON, not an
// object, or ambiguous (see ambiguous): all are invalid_json.
func parseObject(b []byte) (f fields, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' || !json.Valid(b) {
		return f, false
	}
	// Names seen so far, unescaped, to find duplicates. Most messages have
	// a few members: a scan of this stack array costs less than a map.
	var small [smallObject][]byte
	var seen map[string]struct{} // past smallObject members
	n := 0
	for key, val := range members(b) {
		name := key[1 : len(key)-1]
		escaped := bytes.IndexByte(name, '\\') >= 0
		if escaped {
			name = memberName(key)
		}
		if ambiguous(name, escaped) {
			return f, false
		}
		if n < smallObject {
			for _, s := range small[:n] {
				if bytes.Equal(s, name) {
					return f, false
				}
			}
			small[n] = name
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 2*smallObject)
				for _, s := range small {
					seen[string(s)] = struct{}{}
				}
			}
			if _, dup := seen[string(name)]; dup {
				return f, false
			}
			seen[string(name)] = struct{}{}
		}
		n++
		switch string(name) {
		case "type":
			f.typ = val
		case "to":
			f.to = val
		case "id":
			f.id = val
		}
	}
	return f, true
}

// ambiguityHint explains why parseObject refused b, when b is a JSON object
// (so it was refused as ambiguous); "" otherwise.
func ambiguityHint(b []byte) string {
	if i := skipWS(b, 0); i < len(b) && b[i] == '{' && json.Valid(b) {
		return ": a member name appears twice, or a protocol name (to, type, id, since, seq, token, user_id) is in another letter case or spelled with escapes"
	}
	return ""
}

// smallObject is the number of members parseObject checks for duplicates
// without a map.
const smallObject = 16

// protocolNames are the member names the server reads from client messages.
var protocolNames = [...][]byte{
	[]byte("to"), []byte("type"), []byte("id"), []byte("since"), []byte("seq"),
	[]byte("token"), []byte("user_id"),
}

// ambiguous reports whether a member name (unescaped) is a protocol name
// spelled with JSON escapes or in another letter case ("TO", "Type",
// "ſeq" with a long s, which Go's encoding/json folds to "seq"). Decoders
// disagree on such names: Go's matches them case-insensitively, others do
// not, so one decoder could read a private message as a broadcast.
func ambiguous(name []byte, escaped bool) bool {
	if len(name) > 3*len("user_id") { // no case variant is longer
		return false
	}
	for _, p := range protocolNames {
		if bytes.EqualFold(name, p) {
			return escaped || !bytes.Equal(name, p)
		}
	}
	return false
}

// stringValue decodes a raw JSON value that must be a string. ok is false
// for any other JSON type.
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// validID reports whether raw is a string of at most 64 characters or an
// integer literal within ±2^53.
func validID(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	if raw[0] == '"' {
		s, ok := stringValue(raw)
		return ok && utf8.RuneCountInString(s) <= maxIDLen
	}
	digits := raw
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 16 {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	return err == nil && n <= maxSafeInt
}

// stamp returns the message the server delivers: the client's object with
// `from`, `action` and `ts` set by the server (whatever the client wrote is
// dropped, in any letter case: see dropped) and `type` set to "message" when
// absent. prefix is the connection's precomputed `{"from":…,"action":…,"ts":`.
// b must have passed parseObject. It allocates once (more only for member
// names with escapes, which are rare).
func stamp(prefix, b []byte, hasType bool, ts int64) []byte {
	const typeMember = `,"type":"message"`
	out := make([]byte, 0, len(prefix)+20+len(typeMember)+len(b))
	out = append(out, prefix...)
	out = strconv.AppendInt(out, ts, 10)
	for key, val := range members(b) {
		if !dropped(key) {
			out = appendMember(out, key, val)
		}
	}
	if !hasType {
		out = append(out, typeMember...)
	}
	return append(out, '}')
}

var (
	nameFrom   = []byte("from")
	nameAction = []byte("action")
	nameTS     = []byte("ts")
	nameType   = []byte("type")
)

// dropped reports whether stamp leaves out the member with the raw key:
// from, action and ts, which the server sets, and every name that differs
// from these or from type only in letter case. Decoders that match names
// case-insensitively (Go's encoding/json, for one) would otherwise read a
// client's "From" or "TYPE" in place of the server's member.
func dropped(key []byte) bool {
	name := memberName(key)
	switch {
	case bytes.EqualFold(name, nameFrom), bytes.EqualFold(name, nameAction), bytes.EqualFold(name, nameTS):
		return true
	case bytes.EqualFold(name, nameType):
		return string(name) != "type"
	}
	return false
}

// memberName returns the name of a raw member key, unescaped ("fr\u006fm"
// is "from"). It allocates only for names with escapes.
func memberName(key []byte) []byte {
	name := key[1 : len(key)-1]
	if bytes.IndexByte(name, '\\') < 0 {
		return name
	}
	var s string
	if json.Unmarshal(key, &s) != nil {
		return name // cannot happen: the object passed parseObject
	}
	return []byte(s)
}

// appendMember appends `,key:val`.
func appendMember(out, key, val []byte) []byte {
	out = append(out, ',')
	out = append(out, key...)
	out = append(out, ':')
	return append(out, val...)
}

// stampPrefix precomputes the start of every message a connection sends.
func stampPrefix(userID, action string) []byte {
	p := []byte(`{"from":`)
	p = appendJSONString(p, userID)
	p = append(p, `,"action":`...)
	p = appendJSONString(p, action)
	return append(p, `,"ts":`...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// errorFrame builds an `error` message. id and to are raw JSON values, or nil.
func errorFrame(code, message string, id, to []byte) []byte {
	b := make([]byte, 0, 64+len(message)+len(id)+len(to))
	b = append(b, `{"type":"error","code":`...)
	b = appendJSONString(b, code) // a custom handler's code may need escaping
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	if id != nil {
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	if to != nil {
		b = append(b, `,"to":`...)
		b = append(b, to...)
	}
	return append(b, '}')
}

// ackFrame builds an `ack` message for the raw id.
func ackFrame(id []byte, delivered int) []byte {
	b := make([]byte, 0, 40+len(id))
	b = append(b, `{"type":"ack","id":`...)
	b = append(b, id...)
	b = append(b, `,"delivered":`...)
	b = strconv.AppendInt(b, int64(delivered), 10)
	return append(b, '}')
}

// eventFrame builds a `join` or `leave` event.
func eventFrame(typ, userID, action string) []byte {
	b := make([]byte, 0, 48+len(userID)+len(action))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","user_id":`...)
	b = appendJSONString(b, userID)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, action)
	return append(b, '}')
}

// errorMessages are the human-readable texts of each code.
var errorMessages = map[string]string{
	CodeMissingAction:      "online needs an action",
	CodeInvalidAction:      "action must be 1-64 characters of A-Z a-z 0-9 _ . : -",
	CodeInvalidUser:        "user_id must be 1-256 bytes of UTF-8 without control characters",
	CodeNotOnline:          "the first message must be online",
	CodeOnlineTimeout:      "no online message in time",
	CodeAlreadyOnline:      "this connection is already online",
	CodeUnauthorized:       "missing or invalid token",
	CodeUserMismatch:       "user_id differs from the token's user",
	CodeTokenExpired:       "the token has expired",
	CodeInvalidJSON:        "a message must be one JSON object",
	CodeBinaryUnsupported:  "binary frames are not supported; send JSON text",
	CodeInvalidTo:          "to must be a user id string",
	CodeInvalidID:          "id must be a string of at most 64 characters or an integer within ±2^53",
	CodeUserOffline:        "the user has no connection in this action",
	CodeReservedType:       "this type is reserved for the server",
	CodeRateLimited:        "too many messages; slow down",
	CodeUnavailable:        "the shared store cannot be reached; retry",
	CodeInternal:           "internal error",
	CodeTooManyConnections: "the user has as many connections as the server allows",
	CodeBanned:             "the user is banned",
}
