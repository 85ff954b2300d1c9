package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/web"
)

func get(t *testing.T, h http.Handler, method, path string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesFiles(t *testing.T) {
	h := web.Handler()
	for _, tt := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/static/app.js">`},
		{"/static/app.js", "text/javascript; charset=utf-8", `from "./switchboard.js"`},
		{"/static/switchboard.js", "text/javascript; charset=utf-8", "export class SwitchboardClient"},
		{"/static/client.js", "text/javascript; charset=utf-8", "export class SwitchboardClient"},
		{"/static/style.css", "text/css; charset=utf-8", ":focus-visible"},
		{"/static/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			for k, want := range map[string]string{
				"Content-Type":            tt.contentType,
				"Cache-Control":           "no-cache",
				"X-Content-Type-Options":  "nosniff",
				"Content-Security-Policy": web.ContentSecurityPolicy,
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if b := body(t, resp); !strings.Contains(b, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}

			etag := resp.Header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) {
				t.Fatalf("ETag = %q, want a strong ETag", etag)
			}
			again := get(t, h, http.MethodGet, tt.path, http.Header{"If-None-Match": {etag}})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("with If-None-Match: status = %d, want 304", again.StatusCode)
			}
			if b := body(t, again); b != "" {
				t.Errorf("304 has a body of %d bytes", len(b))
			}
			stale := get(t, h, http.MethodGet, tt.path, http.Header{"If-None-Match": {`"stale"`}})
			if stale.StatusCode != http.StatusOK {
				t.Errorf("with a stale ETag: status = %d, want 200", stale.StatusCode)
			}

			head := get(t, h, http.MethodHead, tt.path, nil)
			if head.StatusCode != http.StatusOK || body(t, head) != "" {
				t.Errorf("HEAD: status %d with a body; want 200 without", head.StatusCode)
			}
		})
	}
}

func TestHandlerRefuses(t *testing.T) {
	h := web.Handler()
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/index.html", http.StatusNotFound},
		{http.MethodGet, "/static/", http.StatusNotFound},
		{http.MethodGet, "/static", http.StatusNotFound},
		{http.MethodGet, "/static/index.html", http.StatusNotFound},
		{http.MethodGet, "/static/nope.js", http.StatusNotFound},
		{http.MethodGet, "/static/../web.go", http.StatusNotFound},
		{http.MethodGet, "/web.go", http.StatusNotFound},
		{http.MethodGet, "/static/app.js/", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/static/app.js", http.StatusMethodNotAllowed},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp := get(t, h, tt.method, tt.path, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if tt.status == http.StatusMethodNotAllowed {
				if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
				}
			}
		})
	}
}

// TestPageNeedsNoInlineCode checks what the Content-Security-Policy demands
// of the page: no inline script, style or event handler, and every asset
// it names is served.
func TestPageNeedsNoInlineCode(t *testing.T) {
	h := web.Handler()
	page := body(t, get(t, h, http.MethodGet, "/", nil))

	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, ` src="/static/`) {
			t.Errorf("inline script: %s", tag)
		}
	}
	for _, re := range []string{`(?i)<style`, `(?i)\sstyle=`, `(?i)\son[a-z]+=`, `(?i)(src|href)="(https?:)?//`} {
		if m := regexp.MustCompile(re).FindString(page); m != "" {
			t.Errorf("page has %q, which the policy forbids or fetches from outside", m)
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(page, -1) {
		if resp := get(t, h, http.MethodGet, m[1], nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", m[1], resp.StatusCode)
		}
	}

	// The client package has no runtime dependency: it imports nothing.
	client := body(t, get(t, h, http.MethodGet, "/static/switchboard.js", nil))
	if m := regexp.MustCompile(`(?m)^\s*import\b`).FindString(client); m != "" {
		t.Errorf("switchboard.js imports: %q", m)
	}
}

// TestEveryErrorCodeIsExplained checks that the page has a human message
// for every error code of the protocol (SPEC section 4).
func TestEveryErrorCodeIsExplained(t *testing.T) {
	app := body(t, get(t, web.Handler(), http.MethodGet, "/static/app.js", nil))
	for _, code := range []string{
		"missing_action", "invalid_action", "invalid_user", "not_online",
		"online_timeout", "already_online", "unauthorized", "user_mismatch",
		"token_expired", "invalid_json", "binary_unsupported", "invalid_to",
		"invalid_id", "user_offline", "reserved_type", "rate_limited",
		"unavailable", "too_many_connections", "banned", "internal",
	} {
		if !regexp.MustCompile(`(?m)^\s*` + code + `: \(`).MatchString(app) {
			t.Errorf("app.js has no message for %s", code)
		}
	}
}
