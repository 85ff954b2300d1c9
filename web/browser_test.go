package web_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const chromiumPath = "/usr/bin/chromium"

// waitTimeout bounds every wait for a condition on a page.
const waitTimeout = 15 * time.Second

// TestBrowser drives the demo page in a real headless Chromium against the
// real server binary: three users in one action, room and private
// messages, presence, and reconnection after a server restart.
func TestBrowser(t *testing.T) {
	bin := buildServer(t)
	addr := freeAddr(t)
	srv := startServer(t, bin, addr)
	base := "http://" + addr
	browserCtx := startBrowser(t)

	alice := openPage(t, browserCtx, "alice", base)
	bob := openPage(t, browserCtx, "bob", base)
	carol := openPage(t, browserCtx, "carol", base)

	for _, p := range []*page{alice, bob, carol} {
		p.connect("chat")
	}
	for _, p := range []*page{alice, bob, carol} {
		p.waitUsers("alice", "bob", "carol")
	}

	// A room message, sent with Enter, reaches everyone else.
	alice.say("hello everyone")
	bob.waitLog("hello everyone")
	carol.waitLog("hello everyone")
	alice.waitLog("Delivered to 2 connections.")

	// A private message: alice picks bob in her Online users list.
	alice.openConversationWith("bob")
	alice.waitSelectedTab("bob")
	alice.sayWithButton("psst, just for bob")
	alice.waitLog("Delivered to 1 connection.")
	bob.waitUnread("alice", 1)
	bob.openConversationWith("alice")
	bob.waitLog("psst, just for bob")
	bob.say("got it, alice")
	alice.waitLog("got it, alice")
	// Messages of one sender arrive in order, so once carol has the next
	// room message she would have had the private one too.
	alice.keyboardToRoom()
	alice.say("back in the room")
	carol.waitLog("back in the room")
	bob.openConversation("Room")
	bob.say("hi all")
	carol.waitLog("hi all")
	carol.mustNotContain("psst, just for bob", "got it, alice")

	alice.openConversationWith("bob")
	alice.say("one more thing")
	bob.waitUnread("alice", 1)
	screenshots(t, bob)
	bob.phoneUsers("alice")
	bob.waitLog("one more thing")
	bob.openConversation("Room")
	alice.keyboardToRoom()

	// Closing carol's page takes her out of the others' lists.
	carol.close()
	alice.waitUsers("alice", "bob")
	bob.waitUsers("alice", "bob")

	// Kill the server and start it again on the same port: the pages
	// reconnect by themselves, sign in again and request presence again.
	srv.kill()
	alice.waitStatus("Reconnecting")
	bob.waitStatus("Reconnecting")
	srv = startServer(t, bin, addr)
	alice.waitBackOnline("Online as alice in chat")
	bob.waitBackOnline("Online as bob in chat")
	alice.waitUsers("alice", "bob")
	bob.waitUsers("alice", "bob")
	alice.say("after the restart")
	bob.waitLog("after the restart")
	alice.waitLog("Delivered to 1 connection.")

	for _, p := range []*page{alice, bob, carol} {
		p.checkNoErrors()
	}
}

// TestBrowserToken signs in with the Token field against a server that
// requires tokens, and checks that a refused sign-in is explained and not
// retried.
func TestBrowserToken(t *testing.T) {
	secret := "browser-test-secret-0123456789abcdef"
	bin := buildServer(t)
	addr := freeAddr(t)
	startServer(t, bin, addr, "JWT_SECRET="+secret)
	browserCtx := startBrowser(t)
	p := openPage(t, browserCtx, "alice", "http://"+addr)

	for _, tt := range []struct {
		token, status string
	}{
		{"", "Offline: The token is missing, invalid or expired."},
		{hs256(secret, "bob", time.Hour), "Offline: The user ID does not match the token's user."},
		{hs256("wrong secret", "alice", time.Hour), "Offline: The token is missing, invalid or expired."},
		{hs256(secret, "alice", time.Hour), "Online as alice in chat"},
	} {
		p.fill("User ID", "alice")
		p.fill("Action", "chat")
		p.fill("Token", tt.token)
		p.do("clicking Connect", chromedp.Click(label("button", "Connect"), byName("button", "Connect")))
		p.waitStatus(tt.status)
		if strings.HasPrefix(tt.status, "Offline") {
			// A refusal is shown by the form too, and the page does not
			// dial again by itself: only the Connect button does.
			alert := run(p, "reading the alert", chromedp.TextContent(label("alert", ""), byName("alert", "")))
			if want := strings.TrimPrefix(tt.status, "Offline: "); alert != want {
				t.Errorf("alert = %q, want %q", alert, want)
			}
		}
	}
	p.checkNoErrors()
}

// hs256 returns a JWT for sub that expires after ttl, signed with secret.
func hs256(secret, sub string, ttl time.Duration) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims := fmt.Sprintf(`{"sub":%q,"exp":%d}`, sub, time.Now().Add(ttl).Unix())
	unsigned := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc(mac.Sum(nil))
}

// startBrowser starts headless Chromium for the test and returns its
// context; each page opens in a browser context of its own.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatal("chromium not found: install it with `apt-get install -y chromium`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return browserCtx
}

// page is one user's tab, in a browser context of its own.
type page struct {
	t      *testing.T
	user   string
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	errors []string // JavaScript exceptions and console errors
}

func openPage(t *testing.T, browserCtx context.Context, user, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{t: t, user: user, ctx: ctx, cancel: cancel}
	messages := chromedp.Console(ctx) // subscribes now: nothing is missed
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() {
				continue
			}
			// The browser logs each failed WebSocket dial while the server
			// is down; that is the network, not the page.
			if m.Source == "network" && strings.Contains(m.Text, "WebSocket connection to") {
				continue
			}
			p.mu.Lock()
			p.errors = append(p.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			p.mu.Unlock()
		}
	}()
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(url+"/"),
	); err != nil {
		t.Fatalf("%s: opening the page: %v", user, err)
	}
	return p
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.user, what, err)
	}
}

func run[T any](p *page, what string, action chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		p.t.Fatalf("%s: %s: %v", p.user, what, err)
	}
	return v
}

// byName finds elements by their computed ARIA role and accessible name, as
// assistive technology does; an empty name matches any.
func byName(role, name string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		n.RLock()
		root := n.NodeID
		n.RUnlock()
		res, err := cdp.Call(ctx, t, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{
			NodeID: root, AccessibleName: name, Role: role,
		})
		if err != nil {
			return nil, err
		}
		var backend []cdp.BackendNodeID
		for _, ax := range res.Nodes {
			if !ax.Ignored && ax.BackendDOMNodeID != 0 {
				backend = append(backend, ax.BackendDOMNodeID)
			}
		}
		if len(backend) == 0 {
			return nil, nil
		}
		pushed, err := cdp.Call(ctx, t, dom.PushNodesByBackendIDsToFrontend, dom.PushNodesByBackendIDsToFrontendParams{BackendNodeIDs: backend})
		return pushed.NodeIDs, err
	})
}

// the selector text only labels errors; byName does the lookup.
func label(role, name string) string { return fmt.Sprintf("%s %q", role, name) }

func (p *page) connect(action string) {
	p.t.Helper()
	p.fill("User ID", p.user)
	p.fill("Action", action)
	p.do("connecting",
		chromedp.WaitVisible(label("textbox", "Token"), byName("textbox", "Token")),
		chromedp.Click(label("button", "Connect"), byName("button", "Connect")),
	)
	p.waitStatus(fmt.Sprintf("Online as %s in %s", p.user, action))
}

// fill replaces the text of a text field as a user does: select all,
// delete, type.
func (p *page) fill(name, value string) {
	p.t.Helper()
	sel, by := label("textbox", name), byName("textbox", name)
	actions := []chromedp.Action[chromedp.Void]{
		chromedp.Focus(sel, by),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.KeyEvent(kb.Backspace),
	}
	if value != "" {
		actions = append(actions, chromedp.SendKeys(sel, value, by))
	}
	p.do("filling "+name, actions...)
	if got := run(p, "reading "+name, chromedp.Value(sel, by)); got != value {
		p.t.Fatalf("%s: field %s = %q, want %q", p.user, name, got, value)
	}
}

// status is the text of the page's status line (role status).
func (p *page) status() string {
	p.t.Helper()
	return run(p, "reading the status", chromedp.TextContent(label("status", ""), byName("status", "")))
}

func (p *page) waitStatus(prefix string) {
	p.t.Helper()
	p.waitFor("status "+prefix, func() (bool, string) {
		s := p.status()
		return strings.HasPrefix(s, prefix), s
	})
}

// users returns the Online users list as the accessible names of the
// buttons in it, after checking that each item's own text is the same.
func (p *page) users() []string {
	p.t.Helper()
	list := run(p, "finding the Online users list", chromedp.Nodes(label("list", "Online users"), byName("list", "Online users")))
	list[0].RLock()
	root := list[0].NodeID
	list[0].RUnlock()
	var names, texts []string
	p.do("reading Online users", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{NodeID: root, Role: "button"})
		if err != nil {
			return err
		}
		for _, ax := range res.Nodes {
			if ax.Ignored || ax.Name == nil {
				continue
			}
			var name string
			if err := json.Unmarshal(ax.Name.Value, &name); err != nil {
				return err
			}
			names = append(names, name)
		}
		obj, err := cdp.Call(ctx, t, dom.ResolveNode, dom.ResolveNodeParams{NodeID: root})
		if err != nil {
			return err
		}
		byValue := true
		call, err := cdp.Call(ctx, t, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
			FunctionDeclaration: "function() { return [...this.children].map((li) => li.textContent) }",
			ObjectID:            obj.Object.ObjectID,
			ReturnByValue:       &byValue,
		})
		if err != nil {
			return err
		}
		if call.ExceptionDetails != nil {
			return errors.New(call.ExceptionDetails.Text)
		}
		return json.Unmarshal(call.Result.Value, &texts)
	}))
	if !slices.Equal(names, texts) {
		p.t.Fatalf("%s: Online users: accessible names %q, item texts %q; want them equal", p.user, names, texts)
	}
	return names
}

func (p *page) waitUsers(want ...string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("Online users %v", want), func() (bool, string) {
		got := p.users()
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

func (p *page) logText() string {
	p.t.Helper()
	return run(p, "reading the Messages log", chromedp.TextContent(label("log", "Messages"), byName("log", "Messages")))
}

func (p *page) waitLog(text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("Messages shows %q", text), func() (bool, string) {
		s := p.logText()
		return strings.Contains(s, text), s
	})
}

func (p *page) mustNotContain(texts ...string) {
	p.t.Helper()
	body := run(p, "reading the page", chromedp.TextContent(chromedp.CSS("body")))
	for _, text := range texts {
		if strings.Contains(body, text) {
			p.t.Errorf("%s's page shows %q, which was not addressed to them", p.user, text)
		}
	}
	if tabs := p.tabs(); !slices.Equal(tabs, []string{"Room"}) {
		p.t.Errorf("%s's conversations = %v, want [Room]", p.user, tabs)
	}
}

// say types a message into the Message field and presses Enter.
func (p *page) say(text string) {
	p.t.Helper()
	p.do("sending with Enter",
		chromedp.SendKeys(label("textbox", "Message"), text+"\r", byName("textbox", "Message")),
	)
	p.waitLog(text)
}

// sayWithButton types a message and clicks Send.
func (p *page) sayWithButton(text string) {
	p.t.Helper()
	p.do("sending with the Send button",
		chromedp.SendKeys(label("textbox", "Message"), text, byName("textbox", "Message")),
		chromedp.Click(label("button", "Send"), byName("button", "Send")),
	)
	p.waitLog(text)
}

// openConversationWith clicks the user's item in the Online users list.
func (p *page) openConversationWith(user string) {
	p.t.Helper()
	list := run(p, "finding the Online users list", chromedp.Nodes(label("list", "Online users"), byName("list", "Online users")))
	p.do("clicking "+user,
		chromedp.Click(label("button", user), byName("button", user), chromedp.FromNode(list[0])),
	)
}

// openConversation clicks a conversation tab.
func (p *page) openConversation(name string) {
	p.t.Helper()
	p.do("opening tab "+name, chromedp.Click(label("tab", name), byName("tab", name)))
	p.waitSelectedTab(name)
}

// keyboardToRoom moves from the selected tab to the Room tab with the
// arrow keys, as a keyboard user does.
func (p *page) keyboardToRoom() {
	p.t.Helper()
	for range 5 {
		if p.selectedTab() == "Room" {
			return
		}
		p.do("pressing ArrowLeft on the tabs",
			chromedp.Focus(`[role=tab][aria-selected="true"]`, chromedp.ByFunc(selectedTabNode)),
			chromedp.KeyEvent(kb.ArrowLeft),
		)
	}
	p.waitSelectedTab("Room")
}

func selectedTabNode(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
	n.RLock()
	root := n.NodeID
	n.RUnlock()
	res, err := cdp.Call(ctx, t, dom.QuerySelectorAll, dom.QuerySelectorAllParams{NodeID: root, Selector: `[role=tab][aria-selected="true"]`})
	return res.NodeIDs, err
}

// tabs returns the names of the conversation tabs.
func (p *page) tabs() []string {
	p.t.Helper()
	return run(p, "reading the tabs", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('[role=tab]')].map(t => t.firstChild.textContent)`))
}

func (p *page) selectedTab() string {
	p.t.Helper()
	return run(p, "reading the selected tab", chromedp.Evaluate[string](
		`document.querySelector('[role=tab][aria-selected="true"]')?.firstChild.textContent ?? ""`))
}

func (p *page) waitTab(name string) {
	p.t.Helper()
	p.waitFor("a tab "+name, func() (bool, string) {
		tabs := p.tabs()
		return slices.Contains(tabs, name), fmt.Sprint(tabs)
	})
}

// waitUnread waits for the tab of a conversation, and the user's item in
// Online users, to announce n unread messages.
func (p *page) waitUnread(name string, n int) {
	p.t.Helper()
	want := fmt.Sprintf("%d unread", n)
	p.waitFor(fmt.Sprintf("%s on %s", want, name), func() (bool, string) {
		got := run(p, "reading unread markers", chromedp.Evaluate[[]string](fmt.Sprintf(`(() => {
			const name = %q;
			const tab = [...document.querySelectorAll('[role=tab]')].find((t) => t.firstChild.textContent === name);
			const list = document.querySelector('[aria-label="Online users"]');
			const user = [...list.querySelectorAll('button')].find((b) => b.textContent === name);
			return [tab?.getAttribute('aria-description') ?? "", user?.getAttribute('aria-description') ?? ""];
		})()`, name)))
		return slices.Equal(got, []string{want, want}), fmt.Sprintf("tab %q, user item %q", got[0], got[1])
	})
}

func (p *page) waitSelectedTab(name string) {
	p.t.Helper()
	p.waitFor("selected tab "+name, func() (bool, string) {
		s := p.selectedTab()
		return s == name, s
	})
}

func (p *page) close() {
	p.t.Helper()
	p.checkNoErrors()
	if err := chromedp.Cancel(p.ctx); err != nil {
		p.t.Fatalf("%s: closing the page: %v", p.user, err)
	}
}

func (p *page) checkNoErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errors {
		p.t.Errorf("%s's page logged an error: %s", p.user, e)
	}
	p.errors = nil
}

// waitFor polls cond until it holds or waitTimeout passes; cond returns
// what it saw, for the failure message.
func (p *page) waitFor(what string, cond func() (bool, string)) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: waiting for %s: timed out; last saw:\n%s", p.user, what, saw)
		}
		select {
		case <-tick.C:
		case <-p.ctx.Done():
			p.t.Fatalf("%s: waiting for %s: %v", p.user, what, p.ctx.Err())
		}
	}
}

// screenshots saves the page at desktop and phone width, and at desktop
// width in dark mode, into $SCREENSHOT_DIR (default: a temporary
// directory), checking at each width that nothing overflows sideways.
func screenshots(t *testing.T, p *page) {
	t.Helper()
	for _, s := range []struct {
		name          string
		width, height int64
	}{
		{"desktop.png", 1280, 800},
		{"phone.png", 375, 740},
	} {
		p.resize(s.width, s.height)
		savePNG(t, p, s.name)
	}
	p.resize(1280, 800)
	p.colorScheme("dark")
	savePNG(t, p, "dark.png")
	p.colorScheme("")
}

// savePNG saves a screenshot of the page as $SCREENSHOT_DIR/name.
func savePNG(t *testing.T, p *page, name string) {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if !filepath.IsAbs(dir) {
		// Relative to the repository root, where `go test ./web/` is run.
		dir = filepath.Join(repoRoot(t), dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	png := run(p, "taking "+name, chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", filepath.Join(dir, name))
}

// colorScheme emulates prefers-color-scheme: "dark", "light", or "" for
// the default.
func (p *page) colorScheme(scheme string) {
	p.t.Helper()
	params := emulation.SetEmulatedMediaParams{}
	if scheme != "" {
		params.Features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	p.do("emulating color scheme "+scheme, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, params)
		return err
	}))
}

// resize sets the viewport and waits for the layout of that width (the
// users toggle shows only on narrow screens); the page must not scroll
// sideways.
func (p *page) resize(width, height int64) {
	p.t.Helper()
	p.do("resizing", chromedp.EmulateViewport(width, height))
	toggle := width < 640
	p.waitFor(fmt.Sprintf("the layout of width %d", width), func() (bool, string) {
		shown := run(p, "checking the layout", chromedp.Evaluate[bool](
			`getComputedStyle(document.getElementById('people-toggle')).display !== 'none'`))
		return shown == toggle, fmt.Sprint("users toggle shown: ", shown)
	})
	if overflow := run(p, "checking overflow", chromedp.Evaluate[int64](
		`document.documentElement.scrollWidth - document.documentElement.clientWidth`)); overflow > 0 {
		p.t.Errorf("%s: at width %d the page scrolls sideways by %dpx", p.user, width, overflow)
	}
}

// phoneUsers opens a private conversation at phone width: the Online users
// list is folded behind the "Users" button, and folds again after a pick.
func (p *page) phoneUsers(user string) {
	p.t.Helper()
	p.resize(375, 740)
	list := byName("list", "Online users")
	p.do("opening Users",
		// Hidden, the list is out of the accessibility tree: find it by id.
		chromedp.WaitNotVisible(chromedp.CSS("#users")),
		chromedp.Click(label("button", "Users"), byName("button", "Users")),
		chromedp.WaitVisible(label("list", "Online users"), list),
	)
	p.openConversationWith(user)
	p.waitSelectedTab(user)
	p.do("folding Users", chromedp.WaitNotVisible(chromedp.CSS("#users")))
	p.resize(1280, 800)
}

// server is the switchboard binary running as a subprocess.
type server struct {
	t   *testing.T
	cmd *exec.Cmd
	out *syncBuffer
}

func (s *server) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("killing the server: %v", err)
	}
	_ = s.cmd.Wait() // "signal: killed" is expected
}

func startServer(t *testing.T, bin, addr string, env ...string) *server {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(bin)
	// Only the configuration given here: a JWT_SECRET or REDIS_URL in the
	// developer's shell must not change the server under test.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "TMPDIR=" + os.TempDir(), "SWITCHBOARD_ADDR=" + addr}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	s := &server{t: t, cmd: cmd, out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	waitHealthy(t, "http://"+addr+"/healthz", out)
	return s
}

func waitHealthy(t *testing.T, url string, out *syncBuffer) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: not 200 within %v (last error %v); server output:\n%s", url, waitTimeout, err, out.String())
		}
		<-tick.C
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not in a module")
	}
	return filepath.Dir(gomod)
}

func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "switchboard")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/switchboard: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// syncBuffer collects a subprocess's output; os/exec writes from its own
// goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
