package web_test

import (
	"net/http/httptest"
	"os"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/switchboard/switchboard/web"
)

// TestClientModule runs testdata/client_test.js in Chromium: unit tests of
// static/client.js (frames it sends, events, reconnect policy, backoff,
// timeouts) against a scripted WebSocket, with no server.
func TestClientModule(t *testing.T) {
	script, err := os.ReadFile("testdata/client_test.js")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	p := openPage(t, startBrowser(t), "client.js", srv.URL)
	failures := run(p, "running testdata/client_test.js", chromedp.Evaluate[[]string](string(script), chromedp.EvalAwaitPromise))
	for _, f := range failures {
		t.Error(f)
	}
	p.checkNoErrors()
}
