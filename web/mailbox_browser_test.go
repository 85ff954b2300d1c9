package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserMailbox: bob's page is closed, alice sends him three private
// messages, and when bob opens the page again (same browser storage, so
// it resumes from the last seq it saw) he sees all three, once, in order,
// marked unread.
func TestBrowserMailbox(t *testing.T) {
	bin := buildServer(t)
	addr := freeAddr(t)
	startServer(t, bin, addr)
	base := "http://" + addr
	browserCtx := startBrowser(t)
	alice := openPage(t, browserCtx, "alice", base)
	bob := openPage(t, browserCtx, "bob", base)
	alice.connect("chat")
	bob.connect("chat")
	alice.waitUsers("alice", "bob")

	// One message while bob is here: his page keeps its seq.
	alice.openConversationWith("bob")
	alice.say("while you are here")
	alice.waitLog("Delivered to 1 connection.")
	bob.waitUnread("alice", 1)

	bob.do("closing the page", chromedp.Navigate("about:blank"))
	alice.waitUsers("alice")
	texts := []string{"first while away", "second while away", "third while away"}
	for _, text := range texts {
		alice.say(text)
	}
	alice.waitCount("Sent: kept until they come back.", 3)

	bob.do("opening the page again", chromedp.Navigate(base+"/"))
	bob.connect("chat")
	bob.waitUnread("alice", 3)
	bob.openConversationWith("alice")
	bob.waitLog(texts[2])
	log := bob.logText()
	last := -1
	for _, text := range texts {
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
		t.Errorf("bob's reopened page shows the message he had already seen:\n%s", log)
	}
	n := run(bob, "counting new marks", chromedp.Evaluate[int](`document.querySelectorAll('#log .msg.unread').length`))
	if n != 3 {
		t.Errorf("%d messages marked new, want 3", n)
	}
	for _, p := range []*page{alice, bob} {
		p.checkNoErrors()
	}
}
