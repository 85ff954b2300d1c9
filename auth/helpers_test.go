package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

// testKey is an asymmetric key pair generated for the tests, with the
// algorithm used to sign with it.
type testKey struct {
	name   string
	alg    jwt.SigningMethod
	priv   crypto.Signer
	pub    crypto.PublicKey
	rsaKey bool
}

// Keys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() map[string]testKey {
	keys := make(map[string]testKey)
	add := func(name string, alg jwt.SigningMethod, priv crypto.Signer) {
		_, isRSA := priv.(*rsa.PrivateKey)
		keys[name] = testKey{name: name, alg: alg, priv: priv, pub: priv.Public(), rsaKey: isRSA}
	}
	rsa1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	rsa2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	add("RS256", jwt.SigningMethodRS256, rsa1)
	add("RS512", jwt.SigningMethodRS512, rsa1)
	add("PS256", jwt.SigningMethodPS256, rsa1)
	add("RS256-other", jwt.SigningMethodRS256, rsa2)
	for _, c := range []struct {
		name  string
		alg   jwt.SigningMethod
		curve elliptic.Curve
	}{
		{"ES256", jwt.SigningMethodES256, elliptic.P256()},
		{"ES256-other", jwt.SigningMethodES256, elliptic.P256()},
		{"ES384", jwt.SigningMethodES384, elliptic.P384()},
		{"ES512", jwt.SigningMethodES512, elliptic.P521()},
	} {
		k, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			panic(err)
		}
		add(c.name, c.alg, k)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	add("EdDSA", jwt.SigningMethodEdDSA, ed)
	return keys
})

func key(t testing.TB, name string) testKey {
	t.Helper()
	k, ok := testKeys()[name]
	if !ok {
		t.Fatalf("no test key %q", name)
	}
	return k
}

// asymmetric lists one key per key type and algorithm family.
var asymmetric = []string{"RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"}

// claims returns valid claims for sub (exp in an hour) with extra merged in;
// a nil value in extra deletes the claim.
func claims(sub string, extra map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// sign signs c with method and key, setting kid when not empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s: %v", method.Alg(), err)
	}
	return s
}

// signKey signs c with a test key.
func signKey(t testing.TB, k testKey, kid string, c jwt.Claims) string {
	t.Helper()
	return sign(t, k.alg, k.priv, kid, c)
}

// pemBytes encodes pub as "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE".
func pemBytes(t testing.TB, k testKey, blockType string) []byte {
	t.Helper()
	var der []byte
	var err error
	switch blockType {
	case "PUBLIC KEY":
		der, err = x509.MarshalPKIXPublicKey(k.pub)
	case "RSA PUBLIC KEY":
		der = x509.MarshalPKCS1PublicKey(k.pub.(*rsa.PublicKey))
	case "CERTIFICATE":
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "switchboard test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.pub, k.priv)
	default:
		t.Fatalf("unknown PEM type %q", blockType)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

// writeFile writes data to a file in t.TempDir and returns its path.
func writeFile(t testing.TB, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwk is a test key published in a JWKS under kid.
type jwk struct {
	kid string
	key testKey
}

func jwksJSON(t testing.TB, keys ...jwk) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		j, err := jwkset.NewJWKFromKey(k.key.pub, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig},
		})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// provider is an identity provider served by httptest: a JWKS at /jwks and
// an OIDC discovery document naming it.
type provider struct {
	*httptest.Server
	jwksHits      atomic.Int64
	discoveryHits atomic.Int64

	stall   atomic.Bool   // hold every request until release is closed
	release chan struct{} // closed when the test ends

	mu     sync.Mutex
	status int
	body   []byte
	issuer string // issuer in the discovery document; default the server URL
}

func newProvider(t testing.TB, keys ...jwk) *provider {
	t.Helper()
	p := &provider{status: http.StatusOK, body: jwksJSON(t, keys...), release: make(chan struct{})}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		close(p.release)
		p.Close()
	})
	return p
}

func (p *provider) serve(w http.ResponseWriter, r *http.Request) {
	if p.stall.Load() {
		select {
		case <-p.release:
		case <-r.Context().Done():
			return
		}
	}
	p.mu.Lock()
	status, body, issuer := p.status, p.body, p.issuer
	p.mu.Unlock()
	switch r.URL.Path {
	case "/jwks":
		p.jwksHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	case "/.well-known/openid-configuration":
		p.discoveryHits.Add(1)
		if issuer == "" {
			issuer = p.URL
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": p.URL + "/jwks"})
	default:
		http.NotFound(w, r)
	}
}

func (p *provider) jwksURL() string { return p.URL + "/jwks" }

func (p *provider) setKeys(t testing.TB, keys ...jwk) {
	t.Helper()
	p.setRaw(http.StatusOK, jwksJSON(t, keys...))
}

func (p *provider) setRaw(status int, body []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status, p.body = status, body
}

func (p *provider) setIssuer(iss string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer = iss
}

// newVerifier calls auth.New and fails the test on error.
func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// startRun runs v.Run until the test ends, then checks that it returned.
func startRun(t testing.TB, v *auth.Verifier) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// logBuffer collects a Verifier's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count counts the lines containing s.
func (l *logBuffer) count(s string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// verifyOK verifies token and checks the user id.
func verifyOK(t testing.TB, v *auth.Verifier, token, wantUser string) auth.Claims {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.UserID != wantUser {
		t.Fatalf("UserID = %q, want %q", c.UserID, wantUser)
	}
	return c
}

// verifyErr verifies token and checks that it is refused with an error
// wrapping ErrInvalidToken (and want, when not nil).
func verifyErr(t testing.TB, v *auth.Verifier, token string, want error) error {
	t.Helper()
	c, err := v.Verify(context.Background(), token)
	if err == nil {
		t.Fatalf("Verify accepted the token (user %q)", c.UserID)
	}
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("Verify error %v does not wrap %v", err, want)
	}
	if c != (auth.Claims{}) {
		t.Fatalf("Verify returned claims %+v with its error", c)
	}
	return err
}
