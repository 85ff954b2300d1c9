package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

func TestJWKSUnknownKIDRefresh(t *testing.T) {
	a, b, c := key(t, "ES256"), key(t, "RS256"), key(t, "EdDSA")
	p := newProvider(t, jwk{"a", a})
	// No periodic refresh during the test: only unknown kids refresh.
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), RefreshInterval: time.Hour})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	verifyOK(t, v, signKey(t, a, "a", claims("alice", nil)), "alice")
	hits := p.jwksHits.Load()

	// Rotation: a new kid is fetched at once, without restart.
	p.setKeys(t, jwk{"a", a}, jwk{"b", b})
	verifyOK(t, v, signKey(t, b, "b", claims("bob", nil)), "bob")
	if got := p.jwksHits.Load(); got != hits+1 {
		t.Fatalf("JWKS fetched %d times for the unknown kid, want 1", got-hits)
	}

	// The next unknown kids within 10s are refused without a fetch, fast.
	p.setKeys(t, jwk{"a", a}, jwk{"b", b}, jwk{"c", c})
	start := time.Now()
	for i := range 20 {
		verifyErr(t, v, signKey(t, c, "c", claims("carol", nil)), auth.ErrUnknownKey)
		verifyErr(t, v, signKey(t, c, fmt.Sprintf("random-%d", i), claims("carol", nil)), auth.ErrUnknownKey)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("40 rate-limited unknown kids took %v", d)
	}
	if got := p.jwksHits.Load(); got != hits+1 {
		t.Errorf("JWKS fetched %d more times while rate limited, want 0", got-hits-1)
	}
	// Known kids are unaffected.
	verifyOK(t, v, signKey(t, a, "a", claims("alice", nil)), "alice")
	verifyOK(t, v, signKey(t, b, "b", claims("bob", nil)), "bob")
}

func TestJWKSPeriodicRefresh(t *testing.T) {
	a, b := key(t, "ES256"), key(t, "ES384")
	p := newProvider(t, jwk{"a", a})
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), RefreshInterval: 10 * time.Millisecond})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	tokA := signKey(t, a, "a", claims("alice", nil))
	tokB := signKey(t, b, "b", claims("bob", nil))
	verifyOK(t, v, tokA, "alice")

	// Use up the unknown-kid refresh so that only the periodic one remains.
	verifyErr(t, v, signKey(t, b, "nobody", claims("x", nil)), auth.ErrUnknownKey)

	// Rotation by the provider: b added, a revoked.
	p.setKeys(t, jwk{"b", b})
	waitFor(t, "the new key to be accepted", func() bool {
		_, err := v.Verify(context.Background(), tokB)
		return err == nil
	})
	waitFor(t, "the revoked key to be refused", func() bool {
		_, err := v.Verify(context.Background(), tokA)
		return err != nil
	})
}

func TestJWKSOutage(t *testing.T) {
	k := key(t, "ES256")
	p := newProvider(t, jwk{"k", k})
	var logs logBuffer
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), RefreshInterval: 10 * time.Millisecond, Logger: logs.logger()})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	tok := signKey(t, k, "k", claims("alice", nil))
	verifyOK(t, v, tok, "alice")

	// 500s: the last good keys stay, logged once.
	p.setRaw(http.StatusInternalServerError, []byte("oops"))
	hits := p.jwksHits.Load()
	waitFor(t, "five failed refreshes", func() bool { return p.jwksHits.Load() >= hits+5 })
	verifyOK(t, v, tok, "alice")
	if !v.Ready() {
		t.Error("Ready() turned false during an outage")
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("%d error lines for one outage, want 1:\n%s", n, logs.String())
	}

	// Recovery is logged once.
	p.setKeys(t, jwk{"k", k})
	waitFor(t, "recovery log", func() bool { return logs.count("fetched again") == 1 })

	// The server gone: the keys stay.
	p.Close()
	waitFor(t, "an error log for the closed server", func() bool { return logs.count("level=ERROR") == 2 })
	verifyOK(t, v, tok, "alice")
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), strings.Split(tok, ".")[2]) {
		t.Error("a token reached the log")
	}
}

func TestJWKSGarbage(t *testing.T) {
	k := key(t, "ES256")
	oct := `{"keys":[{"kty":"oct","kid":"k","k":"` + base64.RawURLEncoding.EncodeToString([]byte(testSecret)) + `"}]}`
	bodies := map[string]string{
		"not JSON":          "<html>502 Bad Gateway</html>",
		"truncated":         `{"keys":[{"kty":"EC","crv":"P-256","x":"`,
		"keys not an array": `{"keys":5}`,
		"empty object":      `{}`,
		"null":              `null`,
		"no keys":           `{"keys":[]}`,
		"only oct keys":     oct,
		"broken key":        `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"k"}]}`,
		"encryption key":    strings.Replace(string(jwksJSON(t, jwk{"k", k})), `"use":"sig"`, `"use":"enc"`, 1),
		"unsupported curve": `{"keys":[{"kty":"OKP","crv":"Ed448","x":"AAAA","kid":"k"}]}`,
		"huge":              `{"keys":[], "pad":"` + strings.Repeat("x", 2<<20) + `"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			p := newProvider(t, jwk{"k", k})
			var logs logBuffer
			v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), RefreshInterval: 10 * time.Millisecond, Logger: logs.logger()})
			startRun(t, v)
			waitFor(t, "Ready", v.Ready)
			tok := signKey(t, k, "k", claims("alice", nil))
			p.setRaw(http.StatusOK, []byte(body))
			hits := p.jwksHits.Load()
			waitFor(t, "three refreshes", func() bool { return p.jwksHits.Load() >= hits+3 })
			verifyOK(t, v, tok, "alice")
			if n := logs.count("level=ERROR"); n != 1 {
				t.Errorf("%d error lines, want 1:\n%s", n, logs.String())
			}
		})
	}
}

func TestJWKSOctKeyIgnored(t *testing.T) {
	// A JWKS that publishes a symmetric key next to an EC key: the oct key
	// never becomes an HMAC secret, with or without JWT_SECRET.
	ec := key(t, "ES256")
	octSecret := []byte("the-jwks-oct-secret-of-32-bytes!!")
	p := newProvider(t)
	body := strings.Replace(string(jwksJSON(t, jwk{"ec", ec})), `"keys":[`,
		`"keys":[{"kty":"oct","kid":"hmac","alg":"HS256","use":"sig","k":"`+base64.RawURLEncoding.EncodeToString(octSecret)+`"},`, 1)
	p.setRaw(http.StatusOK, []byte(body))
	var logs logBuffer
	for name, secret := range map[string]string{"without secret": "", "with another secret": testSecret} {
		t.Run(name, func(t *testing.T) {
			v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), Secret: secret, Logger: logs.logger()})
			startRun(t, v)
			waitFor(t, "Ready", v.Ready)
			verifyOK(t, v, signKey(t, ec, "ec", claims("alice", nil)), "alice")
			for _, kid := range []string{"hmac", ""} {
				verifyErr(t, v, sign(t, jwt.SigningMethodHS256, octSecret, kid, claims("mallory", nil)), nil)
			}
		})
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "symmetric=1") {
		t.Errorf("the ignored oct key was not reported:\n%s", logs.String())
	}
}

func TestJWKSKeyAlgParameter(t *testing.T) {
	// A JWK's alg narrows the algorithms its key accepts; an alg that does
	// not fit the key's type (an RSA key "for HS256") leaves the key out.
	rs := key(t, "RS256")
	p := newProvider(t)
	body := string(jwksJSON(t, jwk{"r", rs}, jwk{"confused", rs}))
	body = strings.Replace(body, `"kid":"r"`, `"kid":"r","alg":"PS256"`, 1)
	body = strings.Replace(body, `"kid":"confused"`, `"kid":"confused","alg":"HS256"`, 1)
	p.setRaw(http.StatusOK, []byte(body))
	var logs logBuffer
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL(), Logger: logs.logger()})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	verifyOK(t, v, sign(t, jwt.SigningMethodPS256, rs.priv, "r", claims("alice", nil)), "alice")
	verifyErr(t, v, sign(t, jwt.SigningMethodRS256, rs.priv, "r", claims("alice", nil)), nil)
	verifyErr(t, v, sign(t, jwt.SigningMethodRS256, rs.priv, "confused", claims("alice", nil)), auth.ErrUnknownKey)
	der, err := x509.MarshalPKIXPublicKey(rs.pub)
	if err != nil {
		t.Fatal(err)
	}
	verifyErr(t, v, sign(t, jwt.SigningMethodHS256, der, "confused", claims("alice", nil)), auth.ErrUnknownKey)
	if !strings.Contains(logs.String(), "level=INFO") || !strings.Contains(logs.String(), "ignored=1") {
		t.Errorf("the ignored key was not reported:\n%s", logs.String())
	}
}

func TestReady(t *testing.T) {
	k := key(t, "ES256")
	p := newProvider(t, jwk{"k", k})
	p.setRaw(http.StatusServiceUnavailable, nil)
	for _, cfg := range []auth.Config{
		{JWKSURL: p.jwksURL(), RefreshInterval: 10 * time.Millisecond},
		{OIDCIssuer: p.URL, RefreshInterval: 10 * time.Millisecond},
	} {
		v := newVerifier(t, cfg)
		if v.Ready() {
			t.Fatal("Ready() = true before Run")
		}
		startRun(t, v)
		hits := p.jwksHits.Load()
		waitFor(t, "three failed fetches", func() bool { return p.jwksHits.Load() >= hits+3 })
		if v.Ready() {
			t.Fatal("Ready() = true while every fetch fails")
		}
		tok := signKey(t, k, "k", claims("alice", map[string]any{"iss": p.URL}))
		verifyErr(t, v, tok, auth.ErrUnknownKey)

		p.setKeys(t, jwk{"k", k})
		waitFor(t, "Ready", v.Ready)
		verifyOK(t, v, tok, "alice")
		p.setRaw(http.StatusServiceUnavailable, nil)
	}
}

func TestConcurrentVerify(t *testing.T) {
	keys := []jwk{{"a", key(t, "ES256")}, {"b", key(t, "RS256")}, {"c", key(t, "EdDSA")}}
	p := newProvider(t, keys...)
	v := newVerifier(t, auth.Config{Secret: testSecret, JWKSURL: p.jwksURL(), RefreshInterval: time.Millisecond})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	var tokens []string
	for _, k := range keys {
		tokens = append(tokens, signKey(t, k.key, k.kid, claims("u-"+k.kid, nil)))
	}
	tokens = append(tokens, sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims("u-h", nil)))
	unknown := signKey(t, key(t, "ES256-other"), "zzz", claims("x", nil))

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				tok := tokens[(g+i)%len(tokens)]
				if _, err := v.Verify(context.Background(), tok); err != nil {
					errs <- err
					return
				}
				if _, err := v.Verify(context.Background(), unknown); err == nil {
					errs <- fmt.Errorf("unknown kid accepted")
					return
				}
			}
		})
	}
	// The provider keeps republishing the same keys meanwhile.
	body := jwksJSON(t, keys...)
	stop := make(chan struct{})
	var pub sync.WaitGroup
	pub.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Microsecond):
				p.setRaw(http.StatusOK, body)
			}
		}
	})
	wg.Wait()
	close(stop)
	pub.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
