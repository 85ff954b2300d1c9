package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name, target, authorization, want string
	}{
		{"bearer header", "/ws", "Bearer abc.def.ghi", "abc.def.ghi"},
		{"scheme case-insensitive", "/ws", "bEaReR abc", "abc"},
		{"spaces trimmed", "/ws", "Bearer   abc  ", "abc"},
		{"query parameter", "/ws/chat?access_token=abc.def.ghi&x=1", "", "abc.def.ghi"},
		{"query parameter escaped", "/ws?access_token=a%2Bb", "", "a+b"},
		{"header before query", "/ws?access_token=fromquery", "Bearer fromheader", "fromheader"},
		{"other scheme falls back to query", "/ws?access_token=q", "Basic dXNlcjpwYXNz", "q"},
		{"empty bearer falls back to query", "/ws?access_token=q", "Bearer ", "q"},
		{"no space after scheme", "/ws", "Bearerabc", ""},
		{"other scheme only", "/ws", "Basic dXNlcjpwYXNz", ""},
		{"nothing", "/ws", "", ""},
		{"other parameters only", "/ws?token=abc", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if tt.authorization != "" {
				r.Header.Set("Authorization", tt.authorization)
			}
			if got := auth.TokenFromRequest(r); got != tt.want {
				t.Errorf("TokenFromRequest = %q, want %q", got, tt.want)
			}
		})
	}
	if got := auth.TokenFromRequest(nil); got != "" {
		t.Errorf("TokenFromRequest(nil) = %q", got)
	}
	if got := auth.TokenFromRequest(&http.Request{Header: http.Header{}}); got != "" {
		t.Errorf("TokenFromRequest(no URL) = %q", got)
	}
}

func TestMint(t *testing.T) {
	secret := []byte(testSecret)
	v := newVerifier(t, auth.Config{Secret: testSecret, Audience: "switchboard", Issuer: "dev"})
	before := time.Now().Truncate(time.Second)
	tok, err := auth.Mint(secret, "alice", time.Hour, map[string]any{"aud": "switchboard", "iss": "dev"})
	if err != nil {
		t.Fatal(err)
	}
	c := verifyOK(t, v, tok, "alice")
	if c.Expiry.Before(before.Add(time.Hour)) || c.Expiry.After(time.Now().Add(time.Hour)) {
		t.Errorf("Expiry = %v, want about an hour from now", c.Expiry)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Method.Alg() != "HS256" {
		t.Errorf("alg = %s, want HS256", parsed.Method.Alg())
	}
	if iat, err := parsed.Claims.GetIssuedAt(); err != nil || iat == nil || iat.Before(before) {
		t.Errorf("iat = %v (%v), want now", iat, err)
	}

	// extra may replace exp: an expired token for tests.
	expired, err := auth.Mint(secret, "alice", time.Hour, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "aud": "switchboard", "iss": "dev"})
	if err != nil {
		t.Fatal(err)
	}
	verifyErr(t, v, expired, auth.ErrExpired)

	for name, f := range map[string]func() (string, error){
		"empty secret": func() (string, error) { return auth.Mint(nil, "alice", time.Hour, nil) },
		"empty sub":    func() (string, error) { return auth.Mint(secret, "", time.Hour, nil) },
		"control sub":  func() (string, error) { return auth.Mint(secret, "a\x00b", time.Hour, nil) },
		"zero ttl":     func() (string, error) { return auth.Mint(secret, "alice", 0, nil) },
		"negative ttl": func() (string, error) { return auth.Mint(secret, "alice", -time.Second, nil) },
	} {
		if tok, err := f(); err == nil {
			t.Errorf("%s: Mint = %q, want an error", name, tok)
		}
	}
	if _, err := v.Verify(context.Background(), tok+"x"); err == nil {
		t.Error("a token with a changed signature was accepted")
	}
}
