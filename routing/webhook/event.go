package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard/switchboard/session"
)

// Event types.
const (
	TypeUserOnline  = "user.online"
	TypeUserOffline = "user.offline"
	TypeUndelivered = "message.undelivered"
	// TypeTest is the event `switchboard webhook test` sends.
	TypeTest = "webhook.test"
)

// Event is one webhook, ready to send: its body is fixed when it is
// emitted, so every attempt carries the same bytes.
type Event struct {
	ID     string // the webhook-id header: unique per event, the same on every retry
	Type   string
	User   string // with Action, the ordering key: one user's events in one action go out in order
	Action string
	At     time.Time // when it happened; the body's timestamp
	Body   []byte    // {"type":…,"timestamp":…,"data":{…}}

	ref  string // where the queue keeps it (a stream entry id), set by Read
	part int    // the queue partition holding it (RedisQueue)
}

// key is the ordering key of e.
func (e *Event) key() string { return orderKey(e.User, e.Action) }

func orderKey(user, action string) string { return user + "\x00" + action }

// splitKey reverses orderKey.
func splitKey(k string) (user, action string) {
	user, action, _ = strings.Cut(k, "\x00")
	return user, action
}

// newID returns a random webhook-id ("msg_" and 22 URL-safe characters).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "msg_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// body is the Standard Webhooks payload.
type body struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

func newEvent(typ, user, action string, at time.Time, data any) (Event, error) {
	at = at.UTC()
	b, err := json.Marshal(body{Type: typ, Timestamp: at.Format(time.RFC3339Nano), Data: data})
	if err != nil {
		return Event{}, fmt.Errorf("webhook: encoding %s: %w", typ, err)
	}
	return Event{ID: newID(), Type: typ, User: user, Action: action, At: at, Body: b}, nil
}

// OnlineEvent returns the user.online event of binding b.
func OnlineEvent(b session.Binding, at time.Time) Event {
	ev, _ := newEvent(TypeUserOnline, b.UserID, b.Action, at, struct { // strings always encode
		UserID       string `json:"user_id"`
		Action       string `json:"action"`
		ConnectionID string `json:"connection_id"`
		Node         string `json:"node"`
	}{b.UserID, b.Action, b.ConnID, b.Node})
	return ev
}

// OfflineEvent returns the user.offline event of user in action; at is
// when the last connection closed.
func OfflineEvent(user, action string, at time.Time) Event {
	ev, _ := newEvent(TypeUserOffline, user, action, at, struct { // strings always encode
		UserID string `json:"user_id"`
		Action string `json:"action"`
	}{user, action})
	return ev
}

// UndeliveredEvent returns the message.undelivered event of msg, a
// direct message (a JSON object, as delivered) to user `to` in action.
func UndeliveredEvent(msg []byte, to, action string, at time.Time) (Event, error) {
	return newEvent(TypeUndelivered, to, action, at, json.RawMessage(msg))
}

// TestEvent returns a webhook.test event, sent by `switchboard webhook
// test` to check the receiver.
func TestEvent(node string, at time.Time) Event {
	ev, _ := newEvent(TypeTest, "", "", at, struct { // strings always encode
		Node    string `json:"node"`
		Message string `json:"message"`
	}{node, "a test event from Switchboard: answer 2xx to acknowledge"})
	return ev
}
