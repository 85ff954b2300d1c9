package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

// Deterministic keys, so that the committed seed corpus under
// testdata/fuzz/FuzzVerify holds tokens these verifiers accept.
const (
	fuzzSecret = "fuzz-secret-fuzz-secret-fuzz-secret"
	fuzzExp    = 4102444800 // 2100-01-01
	fuzzKID    = "fuzz-jwks"
)

var (
	fuzzPEMKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	fuzzJWKSKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
)

// fuzzSeeds are (token, Authorization header, raw query) triples.
func fuzzSeeds(tb testing.TB) [][3]string {
	tb.Helper()
	hs := func(c jwt.MapClaims) string { return sign(tb, jwt.SigningMethodHS256, []byte(fuzzSecret), "", c) }
	base := func(extra map[string]any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": fuzzExp}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	valid := hs(base(nil))
	ed := sign(tb, jwt.SigningMethodEdDSA, fuzzPEMKey, "", base(nil))
	edKID := sign(tb, jwt.SigningMethodEdDSA, fuzzJWKSKey, fuzzKID, base(map[string]any{"app_metadata": map[string]any{"uid": "u-1"}}))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, base(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	h, p, s := segments(valid)
	return [][3]string{
		{valid, "Bearer " + valid, ""},
		{ed, "", "access_token=" + ed},
		{edKID, "bearer " + edKID, "x=1&access_token=" + url.QueryEscape(valid)},
		{hs(base(map[string]any{"app_metadata": map[string]any{"uid": "u-2"}})), "", ""},
		{hs(base(map[string]any{"exp": 1000000000})), "Basic Zm9vOmJhcg==", "access_token="},
		{hs(base(map[string]any{"sub": 42})), "Bearer", "access_token=%zz"},
		{hs(base(map[string]any{"nbf": fuzzExp})), "Bearer  ", ";access_token=a"},
		{sign(tb, jwt.SigningMethodHS512, []byte("wrong"), "", base(nil)), "", ""},
		{none, "", ""},
		{h + "." + b64(`{"sub":"a","exp":`+jsonInt(fuzzExp)+`,"n":`+strings.Repeat("[", 500)+strings.Repeat("]", 500)+`}`) + "." + s, "", ""},
		{b64(`{"alg":"EdDSA","kid":"unknown"}`) + "." + p + "." + s, "", ""},
		{b64(`{"alg":"HS256","crit":["b64"],"b64":false}`) + "." + p + "." + s, "", ""},
		{"a.b.c", "", ""},
		{"..", "", ""},
		{"", "", ""},
	}
}

// fuzzVerifiers accept the secret, the PEM key and the JWKS key: one with
// the default user claim (sub), one with a dotted claim and no leeway.
func fuzzVerifiers(tb testing.TB) []*auth.Verifier {
	tb.Helper()
	pemDER, err := x509.MarshalPKIXPublicKey(fuzzPEMKey.Public())
	if err != nil {
		tb.Fatal(err)
	}
	pemPath := writeFile(tb, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pemDER}))
	p := newProvider(tb, jwk{fuzzKID, testKey{name: "fuzz", pub: fuzzJWKSKey.Public()}})
	verifiers := []*auth.Verifier{
		newVerifier(tb, auth.Config{Secret: fuzzSecret, PublicKeyFile: pemPath, JWKSURL: p.jwksURL()}),
		newVerifier(tb, auth.Config{Secret: fuzzSecret, PublicKeyFile: pemPath, JWKSURL: p.jwksURL(), UserClaim: "app_metadata.uid", Leeway: auth.NoLeeway}),
	}
	for _, v := range verifiers {
		startRun(tb, v)
		waitFor(tb, "Ready", v.Ready)
	}
	return verifiers
}

// TestFuzzSeeds checks that the seeds reach acceptance through every key
// source, so that the fuzzer starts from the paths that matter.
func TestFuzzSeeds(t *testing.T) {
	vs := fuzzVerifiers(t)
	seeds := fuzzSeeds(t)
	want := []struct {
		seed, verifier int
		user           string
	}{{0, 0, "alice"}, {1, 0, "alice"}, {2, 0, "alice"}, {2, 1, "u-1"}, {3, 1, "u-2"}}
	for _, w := range want {
		verifyOK(t, vs[w.verifier], seeds[w.seed][0], w.user)
	}
}

func FuzzVerify(f *testing.F) {
	verifiers := fuzzVerifiers(f)
	for _, s := range fuzzSeeds(f) {
		f.Add(s[0], s[1], s[2])
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, token, authorization, rawQuery string) {
		r := &http.Request{Header: http.Header{"Authorization": {authorization}}, URL: &url.URL{RawQuery: rawQuery}}
		fromRequest := auth.TokenFromRequest(r)
		if fromRequest != "" && !strings.Contains(authorization, fromRequest) && fromRequest != r.URL.Query().Get("access_token") {
			t.Fatalf("TokenFromRequest = %q, from neither the header nor the query", fromRequest)
		}
		for _, v := range verifiers {
			for _, tok := range []string{token, fromRequest} {
				c, err := v.Verify(ctx, tok)
				if err != nil {
					if !errors.Is(err, auth.ErrInvalidToken) {
						t.Fatalf("Verify error %v does not wrap ErrInvalidToken", err)
					}
					if c != (auth.Claims{}) {
						t.Fatalf("Verify returned %+v with an error", c)
					}
					continue
				}
				if c.UserID == "" || len(c.UserID) > 256 || !utf8.ValidString(c.UserID) || strings.ContainsFunc(c.UserID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Fatalf("Verify accepted user id %q", c.UserID)
				}
				if c.Expiry.IsZero() {
					t.Fatal("Verify accepted a token without expiry")
				}
			}
		}
	})
}
