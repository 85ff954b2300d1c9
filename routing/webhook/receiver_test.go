package webhook_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// testSecret is a Standard Webhooks secret (whsec_ + base64 of 24 bytes).
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// got is one request the receiver verified.
type got struct {
	ID   string
	Type string
	Body []byte
	At   time.Time
	Data map[string]any
}

// receiver is a real HTTP server that verifies every request with the
// official Standard Webhooks library and records it. answer, when set,
// picks the status of each request (it may block to simulate a hung
// receiver); the default is 204.
type receiver struct {
	t   testing.TB
	srv *httptest.Server
	wh  *standardwebhooks.Webhook

	mu       sync.Mutex
	reqs     []got
	inFlight int
	maxIn    int
	bad      int // requests that failed verification
	answer   func(g got, n int) int
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) URL() string { return r.srv.URL }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		r.t.Errorf("signature does not verify: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		r.t.Errorf("body %s: %v", body, err)
	}
	g := got{ID: req.Header.Get("webhook-id"), Type: b.Type, Body: body, At: time.Now(), Data: b.Data}
	r.mu.Lock()
	r.reqs = append(r.reqs, g)
	n := 0
	for _, x := range r.reqs {
		if x.ID == g.ID {
			n++
		}
	}
	r.inFlight++
	r.maxIn = max(r.maxIn, r.inFlight)
	answer := r.answer
	r.mu.Unlock()
	status := http.StatusNoContent
	if answer != nil {
		status = answer(g, n)
	}
	r.mu.Lock()
	r.inFlight--
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *receiver) setAnswer(f func(g got, n int) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// requests returns a copy of every verified request so far.
func (r *receiver) requests() []got {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]got(nil), r.reqs...)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
