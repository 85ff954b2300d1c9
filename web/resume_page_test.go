package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/web"
)

// TestPageResumeScripted checks the demo page's side of resuming (SPEC
// 9 and 10) against a scripted server that numbers bob's private messages:
// the reopened page sends `since` from its storage, and shows what was
// replayed once each (a repeat at the seam is dropped), in order, marked
// unread. TestBrowserMailbox (build tag mailbox) does the same against the
// real server.
func TestPageResumeScripted(t *testing.T) {
	var mu sync.Mutex
	var sinces []any // the `since` of each online, nil when absent
	msg := func(seq int, text string) map[string]any {
		return map[string]any{"type": "message", "from": "alice", "to": "bob", "action": "chat", "ts": 1, "seq": seq, "text": text}
	}
	upgrader := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		var online map[string]any
		if conn.ReadJSON(&online) != nil {
			return
		}
		mu.Lock()
		sinces = append(sinces, online["since"])
		first := len(sinces) == 1
		mu.Unlock()
		var frames []map[string]any
		if first {
			frames = []map[string]any{
				{"type": "ready", "connection_id": "c1", "user_id": "bob", "action": "chat", "seq": 1},
				msg(1, "while you are here"),
			}
		} else {
			frames = []map[string]any{
				{"type": "ready", "connection_id": "c2", "user_id": "bob", "action": "chat", "seq": 4},
				msg(2, "first while away"), msg(3, "second while away"),
				msg(3, "second while away"), // a repeat at the seam
				msg(4, "third while away"),
			}
		}
		for _, f := range frames {
			if conn.WriteJSON(f) != nil {
				return
			}
		}
		for {
			var m map[string]any
			if conn.ReadJSON(&m) != nil {
				return
			}
			switch m["type"] {
			case "presence":
				_ = conn.WriteJSON(map[string]any{"type": "presence", "action": "chat", "users": []string{"alice", "bob"}})
			case "read":
				_ = conn.WriteJSON(map[string]any{"type": "ack", "id": m["id"]})
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	bob := openPage(t, startBrowser(t), "bob", srv.URL)
	bob.connect("chat")
	bob.waitUnread("alice", 1)
	bob.do("closing the page", chromedp.Navigate("about:blank"))
	bob.do("opening the page again", chromedp.Navigate(srv.URL+"/"))
	bob.connect("chat")
	bob.waitUnread("alice", 3)
	bob.openConversationWith("alice")
	bob.waitLog("third while away")

	mu.Lock()
	got, _ := json.Marshal(sinces)
	mu.Unlock()
	if string(got) != "[null,1]" {
		t.Errorf("since of each online = %s, want [null,1]", got)
	}
	log := bob.logText()
	last := -1
	for _, text := range []string{"first while away", "second while away", "third while away"} {
		if n := strings.Count(log, text); n != 1 {
			t.Errorf("bob's log shows %q %d times, want once", text, n)
		}
		i := strings.Index(log, text)
		if i < last {
			t.Errorf("bob's log shows %q out of order:\n%s", text, log)
		}
		last = i
	}
	if strings.Contains(log, "while you are here") {
		t.Errorf("the reopened page shows the message seen before:\n%s", log)
	}
	if n := run(bob, "counting new marks", chromedp.Evaluate[int](`document.querySelectorAll('#log .msg.unread').length`)); n != 3 {
		t.Errorf("%d messages marked new, want 3", n)
	}
	bob.checkNoErrors()
}
