package web_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/switchboard/switchboard/internal/redistest"
)

// TestBrowserReconnect kills alice's server while she types, at phone
// width: the page says the connection is lost (log line and banner with a
// countdown), keeps the settings folded, holds her message as waiting, and
// once the server is back sends it exactly once. Bob is on a second node
// (the two share Redis), so he stays online and receives it once.
func TestBrowserReconnect(t *testing.T) {
	rdb := redistest.Start(t)
	bin := buildServer(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	envA := []string{"REDIS_URL=" + rdb.URL(), "SWITCHBOARD_NODE_ID=node-a"}
	envB := []string{"REDIS_URL=" + rdb.URL(), "SWITCHBOARD_NODE_ID=node-b"}
	srvA := startServer(t, bin, addrA, envA...)
	startServer(t, bin, addrB, envB...)
	browserCtx := startBrowser(t)

	alice := openPage(t, browserCtx, "alice", "http://"+addrA)
	bob := openPage(t, browserCtx, "bob", "http://"+addrB)
	alice.resize(375, 740)
	alice.connect("chat")
	bob.connect("chat")
	bob.waitUsers("alice", "bob")
	alice.waitFolded()

	// Alice opens the private conversation from the folded users list.
	alice.do("opening Users",
		chromedp.Click(label("button", "Users"), byName("button", "Users")),
		chromedp.WaitVisible(label("list", "Online users"), byName("list", "Online users")),
	)
	alice.openConversationWith("bob")
	alice.waitSelectedTab("bob")
	alice.say("before the outage")
	alice.waitCount("Delivered to 1 connection.", 1)
	bob.openConversationWith("alice")
	bob.waitLog("before the outage")

	srvA.kill()
	alice.waitStatus("Reconnecting")
	alice.waitLog("Connection lost.")
	alice.waitBanner("Reconnecting in")
	alice.waitFolded()
	savePNG(t, alice, "reconnecting.png")

	const typed = "typed while the server was down"
	alice.say(typed)
	alice.waitLog("Waiting for the connection…")

	startServer(t, bin, addrA, envA...)
	alice.waitBackOnline("Online as alice in chat")
	alice.waitLog("Connection is back.")
	alice.waitCount("Delivered to 1 connection.", 2)
	bob.waitLog(typed)
	alice.waitFolded()
	alice.resize(375, 740) // nothing scrolls sideways after the reconnect

	// Messages of one sender arrive in order: once bob has the next one,
	// a second copy of the typed message would have arrived before it.
	alice.say("after the outage")
	bob.waitLog("after the outage")
	if n := strings.Count(bob.logText(), typed); n != 1 {
		t.Errorf("bob's log shows the message typed offline %d times, want 1", n)
	}
	if n := strings.Count(alice.logText(), typed); n != 1 {
		t.Errorf("alice's log shows the message typed offline %d times, want 1", n)
	}
	for _, p := range []*page{alice, bob} {
		p.checkNoErrors()
	}
}

// TestBrowserDetails checks what makes the page a chat app: joins and
// leaves in the room, custom types as small lines, multi-line input, the
// private marker, closeable private tabs, long ids wrapped at a narrow
// width, and the "new messages" marker when scrolled up.
func TestBrowserDetails(t *testing.T) {
	bin := buildServer(t)
	addr := freeAddr(t)
	startServer(t, bin, addr)
	alice := openPage(t, startBrowser(t), "alice", "http://"+addr)
	alice.connect("chat")

	long := "auth0|" + strings.Repeat("5f7c1e2d9a", 12)
	bot := dialBot(t, addr, long)
	alice.waitLog(long + " joined.")

	// A custom type is a small line, not a bubble.
	bot.send(t, map[string]any{"type": "typing"})
	alice.waitLog(long + " sent “typing”")
	if n := run(alice, "counting bubbles", chromedp.Evaluate[int]("document.querySelectorAll('#log .msg').length")); n != 0 {
		t.Errorf("a custom type made %d bubbles, want none", n)
	}

	// Shift+Enter starts a new line; Enter sends both lines as one message.
	alice.do("typing two lines",
		chromedp.SendKeys(label("textbox", "Message"), "first line", byName("textbox", "Message")),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.SendKeys(label("textbox", "Message"), "second line", byName("textbox", "Message")),
	)
	if v := run(alice, "reading Message", chromedp.Value(label("textbox", "Message"), byName("textbox", "Message"))); v != "first line\nsecond line" {
		t.Fatalf("Message = %q after Shift+Enter, want two lines", v)
	}
	alice.do("sending with Enter", chromedp.SendKeys(label("textbox", "Message"), "\r", byName("textbox", "Message")))
	got := bot.next(t, func(m map[string]any) bool { return m["text"] != nil })
	if got["text"] != "first line\nsecond line" {
		t.Errorf("bot received %q, want the two lines", got["text"])
	}
	if v := run(alice, "reading Message", chromedp.Value(label("textbox", "Message"), byName("textbox", "Message"))); v != "" {
		t.Errorf("Message = %q after sending, want it empty", v)
	}

	// A private message: its own tab, a visible "Private" marker, closeable.
	bot.send(t, map[string]any{"to": "alice", "text": "a private word"})
	alice.waitUnread(long, 1)
	alice.openConversationWith(long)
	alice.waitLog("a private word")
	marker := run(alice, "reading the private marker", chromedp.Evaluate[string](
		`document.querySelector('#log .msg.direct .private')?.textContent ?? ""`))
	if marker != "Private" {
		t.Errorf("private marker = %q, want Private", marker)
	}

	// At 329 px, the long id wraps instead of widening the page.
	alice.do("narrowing", chromedp.EmulateViewport(329, 700))
	if overflow := run(alice, "checking overflow", chromedp.Evaluate[int64](
		`document.documentElement.scrollWidth - document.documentElement.clientWidth`)); overflow > 0 {
		t.Errorf("at width 329 the page scrolls sideways by %dpx", overflow)
	}
	alice.do("widening", chromedp.EmulateViewport(1280, 800))

	closeName := "Close conversation with " + long
	alice.do("closing the private tab", chromedp.Click(label("button", closeName), byName("button", closeName)))
	alice.waitSelectedTab("Room")
	if tabs := alice.tabs(); len(tabs) != 1 {
		t.Errorf("tabs after closing = %q, want [Room]", tabs)
	}

	// Scrolled up, new messages show a marker instead of moving the view.
	for i := range 40 {
		bot.send(t, map[string]any{"text": fmt.Sprintf("filler %d", i)})
	}
	alice.waitLog("filler 39")
	run(alice, "scrolling up", chromedp.Evaluate[int](`document.getElementById('log').scrollTop = 0`))
	bot.send(t, map[string]any{"text": "while scrolled up"})
	alice.waitLog("while scrolled up")
	alice.do("seeing the marker", chromedp.WaitVisible(label("button", "New messages ↓"), byName("button", "New messages ↓")))
	alice.do("following the marker", chromedp.Click(label("button", "New messages ↓"), byName("button", "New messages ↓")))
	alice.do("marker gone", chromedp.WaitNotVisible(chromedp.CSS("#new-messages")))

	bot.close()
	alice.waitLog(long + " left.")

	// Disconnected, Enter says that the message was not sent.
	alice.do("clicking Disconnect", chromedp.Click(label("button", "Disconnect"), byName("button", "Disconnect")))
	alice.waitStatus("Offline")
	alice.waitLog("Disconnected.")
	alice.do("sending while disconnected",
		chromedp.SendKeys(label("textbox", "Message"), "into the void\r", byName("textbox", "Message")))
	alice.waitLog("Not connected: the message was not sent.")
	alice.checkNoErrors()
}

// waitFolded waits until the connect form is folded away (phone layout).
func (p *page) waitFolded() {
	p.t.Helper()
	p.waitFor("the settings folded", func() (bool, string) {
		d := run(p, "reading the form's display", chromedp.Evaluate[string](`getComputedStyle(document.getElementById('connect')).display`))
		return d == "none", "display: " + d
	})
}

// waitBackOnline waits for the status to start with prefix after the
// server came back, pressing the banner's "Retry now" whenever the page is
// waiting out a backoff delay (which may be long after a few failed
// attempts), as an impatient user does.
func (p *page) waitBackOnline(prefix string) {
	p.t.Helper()
	p.waitFor("status "+prefix, func() (bool, string) {
		s := p.status()
		if strings.HasPrefix(s, prefix) {
			return true, s
		}
		run(p, "pressing Retry now", chromedp.Evaluate[bool](`(() => {
			const b = document.getElementById('retry');
			const waiting = document.getElementById('status').dataset.state === 'reconnecting';
			if (!waiting || b.hidden || document.getElementById('banner').hidden) return false;
			b.click();
			return true;
		})()`))
		return false, s
	})
}

// waitBanner waits for the connection banner to show text.
func (p *page) waitBanner(text string) {
	p.t.Helper()
	p.waitFor("the banner showing "+text, func() (bool, string) {
		s := run(p, "reading the banner", chromedp.Evaluate[string](
			`(() => { const b = document.getElementById('banner'); return b.hidden ? "(hidden)" : b.textContent })()`))
		return strings.Contains(s, text), s
	})
}

// waitCount waits until the Messages log shows text exactly n times.
func (p *page) waitCount(text string, n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("Messages showing %q %d times", text, n), func() (bool, string) {
		s := p.logText()
		return strings.Count(s, text) == n, s
	})
}

// bot is a WebSocket client of the protocol, driven by the test.
type bot struct {
	conn *websocket.Conn
	in   chan map[string]any
}

func dialBot(t *testing.T, addr, user string) *bot {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", http.Header{})
	if err != nil {
		t.Fatalf("dialling as %s: %v", user, err)
	}
	resp.Body.Close()
	b := &bot{conn: conn, in: make(chan map[string]any, 256)}
	go func() {
		defer close(b.in)
		for {
			var m map[string]any
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			b.in <- m
		}
	}()
	t.Cleanup(b.close)
	b.send(t, map[string]any{"type": "online", "action": "chat", "user_id": user})
	b.next(t, func(m map[string]any) bool { return m["type"] == "ready" })
	return b
}

func (b *bot) send(t *testing.T, m map[string]any) {
	t.Helper()
	if err := b.conn.WriteJSON(m); err != nil {
		t.Fatalf("bot: sending: %v", err)
	}
}

// next returns the first frame that matches, skipping others.
func (b *bot) next(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case m, ok := <-b.in:
			if !ok {
				t.Fatal("bot: connection closed")
			}
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatal("bot: timed out waiting for a frame")
		}
	}
}

func (b *bot) close() { _ = b.conn.Close() }
