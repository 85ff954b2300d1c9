package auth_test

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard/switchboard/auth"
)

func BenchmarkVerify(b *testing.B) {
	rs, es, ed := key(b, "RS256"), key(b, "ES256"), key(b, "EdDSA")
	p := newProvider(b, jwk{"rs", rs}, jwk{"es", es})
	v := newVerifier(b, auth.Config{
		Secret:        testSecret,
		PublicKeyFile: writeFile(b, pemBytes(b, ed, "PUBLIC KEY")),
		JWKSURL:       p.jwksURL(),
	})
	startRun(b, v)
	waitFor(b, "Ready", v.Ready)
	dotted := newVerifier(b, auth.Config{Secret: testSecret, UserClaim: "app_metadata.uid"})

	c := claims("auth0|5f7c8ec7c33c6c004bbafe82", map[string]any{
		"iss": "https://tenant.example.com/", "aud": []string{"switchboard", "https://tenant.example.com/userinfo"},
		"scope": "openid profile email", "azp": "8f6a5b", "app_metadata": map[string]any{"uid": "u-1"},
	})
	hs := sign(b, jwt.SigningMethodHS256, []byte(testSecret), "", c)
	benches := []struct {
		name  string
		v     *auth.Verifier
		token string
		ok    bool
	}{
		{"HS256", v, hs, true},
		{"HS256/dotted-claim", dotted, hs, true},
		{"HS256/bad-signature", v, hs[:len(hs)-4] + "AAAA", false},
		{"EdDSA/PEM", v, signKey(b, ed, "", c), true},
		{"ES256/JWKS", v, signKey(b, es, "es", c), true},
		{"RS256/JWKS", v, signKey(b, rs, "rs", c), true},
		{"garbage", v, "not.a.token", false},
	}
	ctx := context.Background()
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bb.v.Verify(ctx, bb.token); (err == nil) != bb.ok {
						b.Fatalf("Verify: %v", err)
					}
				}
			})
		})
	}
}
