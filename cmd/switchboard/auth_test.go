package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

const testSecret = "e2e-secret-0123456789"

func hs256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validClaims(sub string, ttl time.Duration) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
}

// onlineWith sends online with a token and returns the client.
func onlineWith(t *testing.T, n *testNode, token, user string) *client {
	t.Helper()
	c := n.dial(t, "/ws", nil)
	msg := map[string]any{"type": "online", "action": "chat", "token": token}
	if user != "" {
		msg["user_id"] = user
	}
	c.send(msg)
	return c
}

func TestAuthRefusals(t *testing.T) {
	// A large MAX_MESSAGE_BYTES lets the oversized tokens reach the verifier.
	n := startNode(t, "--jwt-secret", testSecret, "--jwt-issuer", "https://id.example", "--jwt-audience", "chat-app",
		"--jwt-leeway", "0", "--max-message-bytes", "8388608")
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "iss": "https://id.example", "aud": "chat-app", "exp": time.Now().Add(time.Hour).Unix()}
	}
	with := func(k string, v any) string {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return hs256(t, c)
	}
	valid := hs256(t, good())
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","iss":"https://id.example","aud":"chat-app","exp":9999999999}`)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, good()).SignedString([]byte("wrong-secret"))
	nested := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	deep := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(nested)) + ".sig"

	cases := []struct {
		name, token string
	}{
		{"no token", ""},
		{"expired", with("exp", time.Now().Add(-time.Minute).Unix())},
		{"not yet valid", with("nbf", time.Now().Add(time.Hour).Unix())},
		{"missing exp", with("exp", nil)},
		{"wrong iss", with("iss", "https://evil.example")},
		{"wrong aud", with("aud", "other-app")},
		{"bad signature", other},
		{"tampered payload", tampered},
		{"alg none", none},
		{"malformed", "not.a.jwt"},
		{"multi-megabyte", strings.Repeat("A", 3<<20)},
		{"deeply nested", deep},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := onlineWith(t, n, tc.token, "")
			c.expectError("unauthorized")
			c.expectClose(websocket.ClosePolicyViolation)
		})
	}
	// The server is unharmed: a valid token still works.
	c := onlineWith(t, n, valid, "")
	if r := c.expect("ready"); r["user_id"] != "alice" {
		t.Fatalf("ready = %v", r)
	}
}

func TestAuthUserFromToken(t *testing.T) {
	n := startNode(t, "--jwt-secret", testSecret, "--max-message-bytes", "4194304")
	tok := hs256(t, validClaims("auth0|5f7c", time.Hour))

	t.Run("user_id matches", func(t *testing.T) {
		c := onlineWith(t, n, tok, "auth0|5f7c")
		c.expect("ready")
	})
	t.Run("user_mismatch", func(t *testing.T) {
		c := onlineWith(t, n, tok, "mallory")
		c.expectError("user_mismatch")
		c.expectClose(websocket.ClosePolicyViolation)
	})
	t.Run("spoofed from is overwritten", func(t *testing.T) {
		a := onlineWith(t, n, tok, "")
		a.expect("ready")
		b := onlineWith(t, n, hs256(t, validClaims("bob", time.Hour)), "")
		b.expect("ready")
		a.send(map[string]any{"text": "hi", "to": "bob", "from": "bob"})
		if m := b.expect("message"); m["from"] != "auth0|5f7c" {
			t.Fatalf("from = %v, want the token's user", m["from"])
		}
	})
	t.Run("bearer header at upgrade", func(t *testing.T) {
		c := n.dial(t, "/ws", http.Header{"Authorization": {"Bearer " + tok}})
		c.send(map[string]any{"type": "online", "action": "chat"})
		if r := c.expect("ready"); r["user_id"] != "auth0|5f7c" {
			t.Fatalf("ready = %v", r)
		}
	})
	t.Run("access_token query at upgrade", func(t *testing.T) {
		c := n.dial(t, "/ws/chat?access_token="+tok, nil)
		c.send(map[string]any{"type": "online"})
		if r := c.expect("ready"); r["user_id"] != "auth0|5f7c" || r["action"] != "chat" {
			t.Fatalf("ready = %v", r)
		}
	})
	t.Run("invalid token at upgrade is 401", func(t *testing.T) {
		_, err := n.tryDial("/ws?access_token=garbage", nil)
		if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
			t.Fatalf("dial err = %v, want HTTP 401", err)
		}
	})
	t.Run("anonymous refused when required", func(t *testing.T) {
		c := n.dial(t, "/ws", nil)
		c.send(map[string]any{"type": "online", "action": "chat", "user_id": "alice"})
		c.expectError("unauthorized")
		c.expectClose(websocket.ClosePolicyViolation)
	})
}

func TestAuthOptional(t *testing.T) {
	n := startNode(t, "--jwt-secret", testSecret, "--auth-required=false")
	anon := n.dial(t, "/ws", nil)
	anon.send(map[string]any{"type": "online", "action": "chat", "user_id": "alice"})
	r := anon.expect("ready")
	if r["user_id"] != r["connection_id"] {
		t.Fatalf("anonymous user id = %v, want the connection id %v (nobody may pose as a token holder)", r["user_id"], r["connection_id"])
	}
	holder := onlineWith(t, n, hs256(t, validClaims("alice", time.Hour)), "")
	if r := holder.expect("ready"); r["user_id"] != "alice" {
		t.Fatalf("ready = %v", r)
	}
}

func TestAuthExpiryAndRefresh(t *testing.T) {
	n := startNode(t, "--jwt-secret", testSecret, "--jwt-leeway", "0")

	t.Run("expires without refresh", func(t *testing.T) {
		c := onlineWith(t, n, hs256(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(1500 * time.Millisecond).Unix()}), "")
		c.expect("ready")
		c.expectErrorWithin("token_expired", 5*time.Second)
		c.expectClose(websocket.ClosePolicyViolation)
	})
	t.Run("refresh keeps it open", func(t *testing.T) {
		exp := time.Now().Add(1500 * time.Millisecond)
		c := onlineWith(t, n, hs256(t, jwt.MapClaims{"sub": "bob", "exp": exp.Unix()}), "")
		c.expect("ready")
		later := time.Now().Add(time.Hour).Unix()
		c.send(map[string]any{"type": "refresh", "token": hs256(t, jwt.MapClaims{"sub": "bob", "exp": later}), "id": 1})
		r := c.expect("refreshed")
		if r["exp"] != float64(later) || r["id"] != 1.0 {
			t.Fatalf("refreshed = %v, want exp %d", r, later)
		}
		// Another user's token and an invalid one are refused; the old token stays.
		c.send(map[string]any{"type": "refresh", "token": hs256(t, validClaims("carol", time.Hour))})
		c.expectError("user_mismatch")
		c.send(map[string]any{"type": "refresh", "token": "garbage"})
		c.expectError("unauthorized")
		// Past the first token's expiry the connection still works.
		waitFor(t, 5*time.Second, "first token expired", func() bool { return time.Now().After(exp.Add(1100 * time.Millisecond)) })
		c.send(map[string]any{"type": "ping"})
		c.expect("pong")
	})
}

// TestAuthJWKSEndToEnd signs with an RSA key served by a JWKS endpoint and
// rotates to an ECDSA key without restarting the server.
func TestAuthJWKSEndToEnd(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []map[string]string{rsaJWK("k1", &rsaKey.PublicKey)}
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		<-mu
		defer func() { mu <- struct{}{} }()
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(srv.Close)
	n := startNode(t, "--jwks-url", srv.URL)
	waitFor(t, 10*time.Second, "/readyz after the first key fetch", func() bool { return status(n.url+"/readyz") == 200 })

	sign := func(m jwt.SigningMethod, kid string, key any, sub string) string {
		tok := jwt.NewWithClaims(m, validClaims(sub, time.Hour))
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c := onlineWith(t, n, sign(jwt.SigningMethodRS256, "k1", rsaKey, "alice"), "")
	if r := c.expect("ready"); r["user_id"] != "alice" {
		t.Fatalf("ready = %v", r)
	}
	// Rotation: a new kid is fetched on first sight.
	<-mu
	keys = append(keys, ecJWK("k2", &ecKey.PublicKey))
	mu <- struct{}{}
	c2 := onlineWith(t, n, sign(jwt.SigningMethodES256, "k2", ecKey, "bob"), "")
	if r := c2.expect("ready"); r["user_id"] != "bob" {
		t.Fatalf("ready = %v", r)
	}
	// HMAC signed with the public key's bytes (key confusion) is refused.
	c3 := onlineWith(t, n, sign(jwt.SigningMethodHS256, "k1", rsaKey.PublicKey.N.Bytes(), "mallory"), "")
	c3.expectError("unauthorized")
	c3.expectClose(websocket.ClosePolicyViolation)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(x), "y": b64(y)}
}
