package auth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenFromRequest returns the token of an HTTP request: the credentials of
// an `Authorization: Bearer …` header (scheme case-insensitive), else the
// `access_token` query parameter (browsers cannot set headers on a
// WebSocket), else "".
func TokenFromRequest(r *http.Request) string {
	if r == nil {
		return ""
	}
	const bearer = "bearer "
	if h := r.Header.Get("Authorization"); len(h) > len(bearer) && strings.EqualFold(h[:len(bearer)], bearer) {
		if t := strings.TrimSpace(h[len(bearer):]); t != "" {
			return t
		}
	}
	if r.URL == nil || r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// Mint returns an HS256 token for sub, valid for ttl from now (claims sub,
// iat, exp), for development and tests (`switchboard token`). The claims in
// extra are added last, so they may also replace sub, iat or exp (a test
// mints an expired token that way). sub must be a valid user id, secret not
// empty and ttl positive.
func Mint(secret []byte, sub string, ttl time.Duration, extra map[string]any) (string, error) {
	switch {
	case len(secret) == 0:
		return "", errors.New("auth: empty secret")
	case !validUserID(sub):
		return "", errors.New("auth: sub is not a valid user id (1–256 bytes of UTF-8 without control characters)")
	case ttl <= 0:
		return "", errors.New("auth: ttl must be positive")
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"sub": sub,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
