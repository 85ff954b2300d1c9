package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

const testSecret = "a-test-secret-of-at-least-32-bytes!!"

func TestNewRefusesBadConfig(t *testing.T) {
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&rsaSmall.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	smallPEM := "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"
	privDER, err := x509.MarshalPKCS8PrivateKey(key(t, "ES256").priv)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := "-----BEGIN PRIVATE KEY-----\n" + base64.StdEncoding.EncodeToString(privDER) + "\n-----END PRIVATE KEY-----\n"

	tests := []struct {
		name string
		cfg  auth.Config
	}{
		{"missing PEM file", auth.Config{PublicKeyFile: "/nonexistent/key.pem"}},
		{"empty PEM file", auth.Config{PublicKeyFile: writeFile(t, nil)}},
		{"PEM file without PEM", auth.Config{PublicKeyFile: writeFile(t, []byte("not a key"))}},
		{"private key in PEM file", auth.Config{PublicKeyFile: writeFile(t, []byte(privPEM))}},
		{"RSA key below 2048 bits", auth.Config{PublicKeyFile: writeFile(t, []byte(smallPEM))}},
		{"unknown PEM block", auth.Config{PublicKeyFile: writeFile(t, []byte("-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n"))}},
		{"JWKS URL not absolute", auth.Config{JWKSURL: "/jwks"}},
		{"JWKS URL not http", auth.Config{JWKSURL: "ftp://example.com/jwks"}},
		{"OIDC issuer not a URL", auth.Config{OIDCIssuer: "example.com"}},
		{"issuer differs from OIDC issuer", auth.Config{OIDCIssuer: "https://a.example.com/", Issuer: "https://b.example.com/"}},
		{"negative refresh interval", auth.Config{JWKSURL: "https://example.com/jwks", RefreshInterval: -time.Second}},
		{"user claim with spaces", auth.Config{Secret: testSecret, UserClaim: " sub"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.New(tt.cfg)
			if err == nil {
				t.Fatalf("New accepted the config: %+v", v)
			}
		})
	}
}

func TestDisabled(t *testing.T) {
	v := newVerifier(t, auth.Config{})
	var nilV *auth.Verifier
	for name, v := range map[string]*auth.Verifier{"zero config": v, "nil": nilV} {
		t.Run(name, func(t *testing.T) {
			if v.Enabled() {
				t.Error("Enabled() = true, want false")
			}
			if !v.Ready() {
				t.Error("Ready() = false, want true (nothing to wait for)")
			}
			tok, err := auth.Mint([]byte(testSecret), "alice", time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			verifyErr(t, v, tok, auth.ErrDisabled)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := v.Run(ctx); err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		})
	}
}

func TestSecret(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret})
	if !v.Enabled() || !v.Ready() {
		t.Fatalf("Enabled() = %v, Ready() = %v; want both true", v.Enabled(), v.Ready())
	}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		t.Run(m.Alg(), func(t *testing.T) {
			verifyOK(t, v, sign(t, m, []byte(testSecret), "", claims("alice", nil)), "alice")
			// A kid does not matter to HMAC.
			verifyOK(t, v, sign(t, m, []byte(testSecret), "some-kid", claims("alice", nil)), "alice")
			verifyErr(t, v, sign(t, m, []byte("another-secret-of-at-least-32-bytes"), "", claims("alice", nil)), nil)
		})
	}
}

func TestPEM(t *testing.T) {
	for _, name := range asymmetric {
		k := key(t, name)
		types := []string{"PUBLIC KEY", "CERTIFICATE"}
		if k.rsaKey {
			types = append(types, "RSA PUBLIC KEY")
		}
		for _, typ := range types {
			t.Run(name+"/"+typ, func(t *testing.T) {
				v := newVerifier(t, auth.Config{PublicKeyFile: writeFile(t, pemBytes(t, k, typ))})
				if !v.Ready() {
					t.Error("Ready() = false with a PEM key only")
				}
				verifyOK(t, v, signKey(t, k, "", claims("alice", nil)), "alice")
				// A kid that names no JWKS key falls back to the PEM key.
				verifyOK(t, v, signKey(t, k, "k1", claims("bob", nil)), "bob")
			})
		}
	}
}

func TestPEMSeveralKeys(t *testing.T) {
	a, b := key(t, "ES256"), key(t, "ES256-other")
	data := append(pemBytes(t, a, "PUBLIC KEY"), pemBytes(t, b, "CERTIFICATE")...)
	data = append(data, pemBytes(t, key(t, "RS256"), "PUBLIC KEY")...)
	v := newVerifier(t, auth.Config{PublicKeyFile: writeFile(t, data)})
	verifyOK(t, v, signKey(t, a, "", claims("alice", nil)), "alice")
	verifyOK(t, v, signKey(t, b, "", claims("bob", nil)), "bob")
	verifyOK(t, v, signKey(t, key(t, "RS256"), "", claims("carol", nil)), "carol")
	verifyErr(t, v, signKey(t, key(t, "RS256-other"), "", claims("mallory", nil)), nil)
}

func TestJWKSEveryKeyType(t *testing.T) {
	var keys []jwk
	for _, name := range asymmetric {
		keys = append(keys, jwk{kid: "kid-" + name, key: key(t, name)})
	}
	p := newProvider(t, keys...)
	for _, source := range []string{"JWKS_URL", "OIDC_ISSUER"} {
		t.Run(source, func(t *testing.T) {
			cfg := auth.Config{JWKSURL: p.jwksURL()}
			iss := ""
			if source == "OIDC_ISSUER" {
				cfg = auth.Config{OIDCIssuer: p.URL}
				iss = p.URL
			}
			v := newVerifier(t, cfg)
			if v.Ready() {
				t.Error("Ready() = true before Run")
			}
			startRun(t, v)
			waitFor(t, "Ready", v.Ready)
			for _, k := range keys {
				t.Run(k.key.name, func(t *testing.T) {
					c := claims("alice", map[string]any{"iss": iss})
					if iss == "" {
						delete(c, "iss")
					}
					verifyOK(t, v, signKey(t, k.key, k.kid, c), "alice")
					// Without kid, every JWKS key fitting the alg is tried.
					verifyOK(t, v, signKey(t, k.key, "", c), "alice")
				})
			}
		})
	}
}

func TestOIDCIssuer(t *testing.T) {
	k := key(t, "RS256")
	p := newProvider(t, jwk{"k1", k})
	v := newVerifier(t, auth.Config{OIDCIssuer: p.URL, Audience: "switchboard"})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	ok := claims("alice", map[string]any{"iss": p.URL, "aud": []string{"other", "switchboard"}})
	verifyOK(t, v, signKey(t, k, "k1", ok), "alice")
	verifyErr(t, v, signKey(t, k, "k1", claims("alice", map[string]any{"aud": "switchboard"})), jwt.ErrTokenRequiredClaimMissing)
	verifyErr(t, v, signKey(t, k, "k1", claims("alice", map[string]any{"iss": p.URL + "/", "aud": "switchboard"})), jwt.ErrTokenInvalidIssuer)
	if got := p.discoveryHits.Load(); got != 1 {
		t.Errorf("discovery fetched %d times, want 1", got)
	}
}

func TestOIDCDiscoveryIssuerMismatch(t *testing.T) {
	p := newProvider(t, jwk{"k1", key(t, "RS256")})
	p.setIssuer("https://evil.example.com")
	var logs logBuffer
	v := newVerifier(t, auth.Config{OIDCIssuer: p.URL, RefreshInterval: 10 * time.Millisecond, Logger: logs.logger()})
	startRun(t, v)
	waitFor(t, "three discovery attempts", func() bool { return p.discoveryHits.Load() >= 3 })
	if v.Ready() {
		t.Fatal("Ready() = true although the discovery document names another issuer")
	}
	if p.jwksHits.Load() != 0 {
		t.Error("the JWKS was fetched although discovery failed")
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want 1 (once per state change):\n%s", n, logs.String())
	}
}

func TestOIDCRequiresHTTPSJWKSForHTTPSIssuer(t *testing.T) {
	// The discovery document of an https issuer that names an http JWKS.
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": "http://" + r.Host + "/jwks"})
	}))
	t.Cleanup(srv.Close)
	var logs logBuffer
	v := newVerifier(t, auth.Config{OIDCIssuer: srv.URL, HTTPClient: srv.Client(), Logger: logs.logger()})
	startRun(t, v)
	waitFor(t, "an error log", func() bool { return logs.count("level=ERROR") > 0 })
	if !strings.Contains(logs.String(), "not https") || v.Ready() {
		t.Errorf("Ready() = %v, logs:\n%s", v.Ready(), logs.String())
	}
}

// refusalVerifier accepts HMAC (secret), RSA (PEM) and ECDSA P-256 (JWKS,
// kid "ec") tokens for issuer "https://issuer.example" and audience
// "switchboard".
func refusalVerifier(t *testing.T) (*auth.Verifier, []byte) {
	t.Helper()
	p := newProvider(t, jwk{"ec", key(t, "ES256")}, jwk{"ec384", key(t, "ES384")})
	pemData := pemBytes(t, key(t, "RS256"), "PUBLIC KEY")
	v := newVerifier(t, auth.Config{
		Secret:        testSecret,
		PublicKeyFile: writeFile(t, pemData),
		JWKSURL:       p.jwksURL(),
		Issuer:        "https://issuer.example",
		Audience:      "switchboard",
		Leeway:        auth.NoLeeway,
	})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	return v, pemData
}

func good(extra map[string]any) jwt.MapClaims {
	c := claims("alice", map[string]any{"iss": "https://issuer.example", "aud": "switchboard"})
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// segments splits a token.
func segments(tok string) (h, p, s string) {
	parts := strings.SplitN(tok, ".", 3)
	return parts[0], parts[1], parts[2]
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestRefusals(t *testing.T) {
	v, pemData := refusalVerifier(t)
	secret := []byte(testSecret)
	rs, es := key(t, "RS256"), key(t, "ES256")
	hour := time.Hour

	// The accepted forms, so that each refusal below differs in one thing.
	verifyOK(t, v, sign(t, jwt.SigningMethodHS256, secret, "", good(nil)), "alice")
	verifyOK(t, v, signKey(t, rs, "", good(nil)), "alice")
	verifyOK(t, v, signKey(t, es, "ec", good(nil)), "alice")

	valid := sign(t, jwt.SigningMethodHS256, secret, "", good(nil))
	h, p, s := segments(valid)
	tampered := h + "." + b64(strings.Replace(`{"aud":"switchboard","exp":EXP,"iss":"https://issuer.example","sub":"admin"}`, "EXP", jsonInt(time.Now().Add(hour).Unix()), 1)) + "." + s
	noneHeader := b64(`{"alg":"none","typ":"JWT"}`)
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, good(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(rs.pub)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		want  error // besides ErrInvalidToken
	}{
		{"no token", "", auth.ErrNoToken},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})), auth.ErrExpired},
		{"expired RSA", signKey(t, rs, "", good(map[string]any{"exp": time.Now().Add(-time.Minute).Unix()})), auth.ErrExpired},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"nbf": time.Now().Add(time.Minute).Unix()})), jwt.ErrTokenNotValidYet},
		{"missing exp", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"exp": nil})), jwt.ErrTokenRequiredClaimMissing},
		{"exp not a number", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"exp": "tomorrow"})), nil},
		{"exp as a numeric string", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"exp": jsonInt(time.Now().Add(hour).Unix())})), nil},
		{"exp as a numeric string, RSA", signKey(t, rs, "", good(map[string]any{"exp": jsonInt(time.Now().Add(hour).Unix())})), nil},
		{"nbf as a numeric string", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"nbf": jsonInt(time.Now().Add(-hour).Unix())})), nil},
		{"wrong iss", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"iss": "https://evil.example"})), jwt.ErrTokenInvalidIssuer},
		{"missing iss", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"iss": nil})), jwt.ErrTokenRequiredClaimMissing},
		{"wrong aud", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"aud": []string{"other"}})), jwt.ErrTokenInvalidAudience},
		{"missing aud", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"aud": nil})), jwt.ErrTokenRequiredClaimMissing},
		{"bad HMAC signature", sign(t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong-s"), "", good(nil)), jwt.ErrTokenSignatureInvalid},
		{"bad RSA signature", signKey(t, key(t, "RS256-other"), "", good(nil)), jwt.ErrTokenSignatureInvalid},
		{"bad ECDSA signature", signKey(t, key(t, "ES256-other"), "ec", good(nil)), jwt.ErrTokenSignatureInvalid},
		{"signature stripped", h + "." + p + ".", nil},
		{"tampered payload", tampered, jwt.ErrTokenSignatureInvalid},
		{"alg none", noneTok, nil},
		{"alg none, empty signature", noneHeader + "." + p + ".", nil},
		{"alg None", b64(`{"alg":"None"}`) + "." + p + ".", nil},
		{"alg missing", b64(`{"typ":"JWT"}`) + "." + p + "." + s, nil},
		{"alg unknown", b64(`{"alg":"HS1"}`) + "." + p + "." + s, nil},
		{"HS256 signed with the PEM text", sign(t, jwt.SigningMethodHS256, pemData, "", good(nil)), nil},
		{"HS256 signed with the DER key", sign(t, jwt.SigningMethodHS256, der, "", good(nil)), nil},
		{"HS256 signed with the PEM text, kid of a JWKS key", sign(t, jwt.SigningMethodHS256, pemData, "ec", good(nil)), nil},
		{"RS256 with the kid of an EC key", signKey(t, rs, "ec", good(nil)), nil},
		{"ES384 with the kid of a P-256 key", signKey(t, key(t, "ES384"), "ec", good(nil)), nil},
		{"ES256 with the kid of a P-384 key", signKey(t, es, "ec384", good(nil)), nil},
		{"unknown kid", signKey(t, key(t, "ES256-other"), "nobody", good(nil)), auth.ErrUnknownKey},
		{"EdDSA without any Ed25519 key", signKey(t, key(t, "EdDSA"), "", good(nil)), auth.ErrUnknownKey},
		{"crit header", sign(t, jwt.SigningMethodHS256, secret, "", good(nil)), nil}, // replaced below
		{"malformed: one segment", "abc", nil},
		{"malformed: two segments", "abc.def", nil},
		{"malformed: four segments", valid + ".x", nil},
		{"malformed: JWE (five segments)", "a.b.c.d.e", nil},
		{"malformed: empty segments", "..", nil},
		{"malformed: header not base64", "!!!." + p + "." + s, nil},
		{"malformed: header padded", h + "==." + p + "." + s, nil},
		{"malformed: header not JSON", b64("alg=HS256") + "." + p + "." + s, nil},
		{"malformed: header an array", b64(`["HS256"]`) + "." + p + "." + s, nil},
		{"malformed: kid a number", b64(`{"alg":"ES256","kid":7}`) + "." + p + "." + s, nil},
		{"malformed: payload not base64", h + ".%%%." + s, nil},
		{"malformed: payload not JSON", h + "." + b64("hello") + "." + s, nil},
		{"malformed: signature not base64", h + "." + p + ".***", nil},
		{"malformed: spaces", " " + valid, nil},
		{"sub a number", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": 12345})), nil},
		{"sub empty", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": ""})), nil},
		{"sub missing", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": nil})), nil},
		{"sub too long", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": strings.Repeat("a", 257)})), nil},
		{"sub with a control character", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": "ali\nce"})), nil},
		{"sub with a C1 control character", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": "ali\u0085ce"})), nil},
		{"sub with a line separator", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": "ali\u2028ce"})), nil},
		{"sub with a paragraph separator", sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": "alice\u2029"})), nil},
		{"too long", strings.Repeat("a", auth.MaxTokenBytes+1), nil},
	}
	// crit: a signed token whose header lists an extension.
	critTok := jwt.NewWithClaims(jwt.SigningMethodHS256, good(nil))
	critTok.Header["crit"] = []string{"b64"}
	critTok.Header["b64"] = false
	crit, err := critTok.SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tests {
		if tests[i].name == "crit header" {
			tests[i].token = crit
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyErr(t, v, tt.token, tt.want)
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
	// The longest accepted user id.
	verifyOK(t, v, sign(t, jwt.SigningMethodHS256, secret, "", good(map[string]any{"sub": strings.Repeat("é", 128)})), strings.Repeat("é", 128))
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestIgnoresKeyURLHeaders(t *testing.T) {
	// An attacker's key, published on the attacker's server and named in
	// the token's jku, x5u and jwk headers, must not be fetched nor used.
	evil := key(t, "ES256-other")
	attacker := newProvider(t, jwk{"evil", evil})
	v, _ := refusalVerifier(t)
	var set struct{ Keys []json.RawMessage }
	if err := json.Unmarshal(jwksJSON(t, jwk{"evil", evil}), &set); err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(evil.alg, good(nil))
	tok.Header["kid"] = "evil"
	tok.Header["jku"] = attacker.jwksURL()
	tok.Header["x5u"] = attacker.URL + "/cert.pem"
	tok.Header["jwk"] = set.Keys[0]
	s, err := tok.SignedString(evil.priv)
	if err != nil {
		t.Fatal(err)
	}
	verifyErr(t, v, s, auth.ErrUnknownKey)
	if n := attacker.jwksHits.Load(); n != 0 {
		t.Errorf("the jku URL was fetched %d times", n)
	}
}

func TestHugeAndNestedTokens(t *testing.T) {
	v, _ := refusalVerifier(t)
	secret := []byte(testSecret)
	h, _, s := segments(sign(t, jwt.SigningMethodHS256, secret, "", good(nil)))
	nested := func(depth int) string {
		return h + "." + b64(`{"sub":"alice","n":`+strings.Repeat("[", depth)+strings.Repeat("]", depth)+`}`) + "." + s
	}
	tests := []struct {
		name     string
		token    string
		maxBytes uint64 // allocated by one Verify
	}{
		{"3 MiB token", strings.Repeat("eyJh", 3<<20/4), 4 << 10},
		{"3 MiB of dots", strings.Repeat(".", 3<<20), 4 << 10},
		{"nested 100000 deep", nested(100000), 4 << 10},
		{"nested within the size cap", nested(2500), 512 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifyErr(t, v, tt.token, nil)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for range 10 {
				if _, err := v.Verify(context.Background(), tt.token); err == nil {
					t.Fatal("accepted")
				}
			}
			runtime.ReadMemStats(&after)
			if got := (after.TotalAlloc - before.TotalAlloc) / 10; got > tt.maxBytes {
				t.Errorf("Verify allocated %d bytes, want at most %d", got, tt.maxBytes)
			}
		})
	}
	// A signed, deeply nested payload within the cap is parsed in bounded
	// memory and then accepted: nesting is not a reason to refuse.
	deep := jwt.MapClaims(good(nil))
	var n any = "x"
	for range 1000 {
		n = []any{n}
	}
	deep["n"] = n
	verifyOK(t, v, sign(t, jwt.SigningMethodHS256, secret, "", deep), "alice")
}

func TestLeeway(t *testing.T) {
	secret := []byte(testSecret)
	at := func(field string, d time.Duration) string {
		return sign(t, jwt.SigningMethodHS256, secret, "", claims("alice", map[string]any{field: time.Now().Add(d).Unix()}))
	}
	tests := []struct {
		name   string
		leeway time.Duration
		token  string
		ok     bool
	}{
		{"default: expired 10s ago", 0, at("exp", -10*time.Second), true},
		{"default: expired 40s ago", 0, at("exp", -40*time.Second), false},
		{"default: valid in 10s", 0, at("nbf", 10*time.Second), true},
		{"default: valid in 40s", 0, at("nbf", 40*time.Second), false},
		{"none: expired 2s ago", auth.NoLeeway, at("exp", -2*time.Second), false},
		{"none: expires in 2s", auth.NoLeeway, at("exp", 2*time.Second), true},
		{"none: valid in 2s", auth.NoLeeway, at("nbf", 2*time.Second), false},
		{"none: valid 2s ago", auth.NoLeeway, at("nbf", -2*time.Second), true},
		{"2m: expired 90s ago", 2 * time.Minute, at("exp", -90*time.Second), true},
		{"2m: expired 150s ago", 2 * time.Minute, at("exp", -150*time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, auth.Config{Secret: testSecret, Leeway: tt.leeway})
			if tt.ok {
				verifyOK(t, v, tt.token, "alice")
				return
			}
			verifyErr(t, v, tt.token, nil)
		})
	}
	for leeway, want := range map[time.Duration]time.Duration{0: 30 * time.Second, auth.NoLeeway: 0, -time.Hour: 0, time.Minute: time.Minute} {
		if got := newVerifier(t, auth.Config{Secret: testSecret, Leeway: leeway}).Leeway(); got != want {
			t.Errorf("Config.Leeway %v: Leeway() = %v, want %v", leeway, got, want)
		}
	}
}

func TestExpiry(t *testing.T) {
	v := newVerifier(t, auth.Config{Secret: testSecret})
	exp := time.Now().Add(42 * time.Minute).Truncate(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims("alice", map[string]any{"exp": exp.Unix()}))
	c := verifyOK(t, v, tok, "alice")
	if !c.Expiry.Equal(exp) {
		t.Errorf("Expiry = %v, want %v", c.Expiry, exp)
	}
	// The same through the map-claims path of a custom user claim.
	v = newVerifier(t, auth.Config{Secret: testSecret, UserClaim: "uid"})
	tok = sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims("alice", map[string]any{"exp": exp.Unix(), "uid": "u1"}))
	if c := verifyOK(t, v, tok, "u1"); !c.Expiry.Equal(exp) {
		t.Errorf("Expiry = %v, want %v", c.Expiry, exp)
	}
}

func TestUserClaim(t *testing.T) {
	secret := []byte(testSecret)
	tests := []struct {
		claim string
		extra map[string]any
		want  string // "" means refused
	}{
		{"app_metadata.uid", map[string]any{"app_metadata": map[string]any{"uid": "u-42"}}, "u-42"},
		{"app_metadata.uid", map[string]any{"app_metadata": map[string]any{"uid": 42}}, ""},
		{"app_metadata.uid", map[string]any{"app_metadata": map[string]any{"other": "x"}}, ""},
		{"app_metadata.uid", map[string]any{"app_metadata": "u-42"}, ""},
		{"app_metadata.uid", map[string]any{"app_metadata.uid": "flat"}, "flat"},
		{"a.b.c", map[string]any{"a": map[string]any{"b": map[string]any{"c": "deep"}}}, "deep"},
		{"https://example.com/uid", map[string]any{"https://example.com/uid": "namespaced"}, "namespaced"},
		{"email", map[string]any{"email": "alice@example.com"}, "alice@example.com"},
		{"email", map[string]any{"email": []string{"alice@example.com"}}, ""},
		{"email", map[string]any{"email": nil}, ""},
		{"cognito:username", map[string]any{"cognito:username": "alice"}, "alice"},
		{"sub", map[string]any{"sub": "auth0|5f7c8ec7c33c6c004bbafe82"}, "auth0|5f7c8ec7c33c6c004bbafe82"},
		{"sub", map[string]any{"sub": 7}, ""},
		{"sub", map[string]any{"sub": true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.claim, func(t *testing.T) {
			v := newVerifier(t, auth.Config{Secret: testSecret, UserClaim: tt.claim})
			tok := sign(t, jwt.SigningMethodHS256, secret, "", claims("sub-value", tt.extra))
			if tt.want == "" {
				verifyErr(t, v, tok, nil)
				return
			}
			verifyOK(t, v, tok, tt.want)
		})
	}
}

func TestSeveralSources(t *testing.T) {
	// HMAC tokens are checked against the secret only; RSA against the PEM
	// key and JWKS keys.
	ec, rs := key(t, "ES256"), key(t, "RS256")
	p := newProvider(t, jwk{"ec", ec})
	v := newVerifier(t, auth.Config{
		Secret:        testSecret,
		PublicKeyFile: writeFile(t, pemBytes(t, rs, "PUBLIC KEY")),
		JWKSURL:       p.jwksURL(),
	})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	verifyOK(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims("h", nil)), "h")
	verifyOK(t, v, signKey(t, rs, "", claims("r", nil)), "r")
	verifyOK(t, v, signKey(t, rs, "not-in-jwks", claims("r", nil)), "r")
	verifyOK(t, v, signKey(t, ec, "ec", claims("e", nil)), "e")
	verifyOK(t, v, signKey(t, ec, "", claims("e", nil)), "e")
}

func TestUnknownKIDWithoutRunFailsFast(t *testing.T) {
	p := newProvider(t, jwk{"k1", key(t, "ES256")})
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL()})
	start := time.Now()
	verifyErr(t, v, signKey(t, key(t, "ES256"), "k1", claims("alice", nil)), auth.ErrUnknownKey)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Verify took %v without Run", d)
	}
	if p.jwksHits.Load() != 0 {
		t.Error("New or Verify fetched the JWKS; only Run may")
	}
}

func TestVerifyHonoursContext(t *testing.T) {
	p := newProvider(t, jwk{"k1", key(t, "ES256")})
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL()})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	p.stall.Store(true) // the refresh for the unknown kid never completes
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, signKey(t, key(t, "ES256"), "k2", claims("alice", nil)))
	if !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("Verify = %v, want ErrUnknownKey", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Verify took %v, its context allowed 100ms", d)
	}
}

func TestRunTwice(t *testing.T) {
	p := newProvider(t, jwk{"k1", key(t, "ES256")})
	v := newVerifier(t, auth.Config{JWKSURL: p.jwksURL()})
	startRun(t, v)
	waitFor(t, "Ready", v.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := v.Run(ctx); err == nil {
		t.Error("a second concurrent Run returned nil, want an error")
	}
}

func TestShortSecretStillWorks(t *testing.T) {
	var logs logBuffer
	v := newVerifier(t, auth.Config{Secret: "dev-secret", Logger: logs.logger()})
	tok, err := auth.Mint([]byte("dev-secret"), "alice", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	verifyOK(t, v, tok, "alice")
	if logs.count("level=WARN") != 1 {
		t.Errorf("want one warning about the short secret, got:\n%s", logs.String())
	}
}

func TestPlainHTTPWarning(t *testing.T) {
	for u, warn := range map[string]bool{
		"http://keycloak.internal:8080/certs": true,
		"http://localhost:8080/certs":         false,
		"http://127.0.0.1:8080/certs":         false,
		"http://[::1]:8080/certs":             false,
		"https://example.com/certs":           false,
	} {
		var logs logBuffer
		newVerifier(t, auth.Config{JWKSURL: u, Logger: logs.logger()})
		if got := logs.count("plain http") == 1; got != warn {
			t.Errorf("%s: warned %v, want %v", u, got, warn)
		}
	}
}

func TestMain(m *testing.M) {
	testKeys() // generate before timing-sensitive tests
	os.Exit(m.Run())
}
