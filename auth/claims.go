package auth

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// maxUserIDBytes is the protocol's limit on a user id (docs/protocol.md).
const maxUserIDBytes = 256

// lookupClaim finds the user claim: a top-level claim of exactly that name
// first (claim names such as "https://example.com/uid" contain dots), then
// the dotted path through nested objects.
func lookupClaim(c jwt.MapClaims, name string, path []string) (any, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	if len(path) < 2 {
		return nil, false
	}
	var cur any = map[string]any(c)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// claimsFrom checks the user claim's value and builds Claims.
func claimsFrom(user any, found bool, exp *jwt.NumericDate, name string) (Claims, error) {
	if !found {
		return Claims{}, fmt.Errorf("%w: no %q claim", ErrInvalidToken, name)
	}
	s, ok := user.(string)
	if !ok {
		// Numbers are refused rather than formatted: 1e21, 12345678901234567890
		// and 1.0 have no single canonical string, and an id that changes
		// form between encoders would split one user in two.
		return Claims{}, fmt.Errorf("%w: %q claim is not a string", ErrInvalidToken, name)
	}
	if !validUserID(s) {
		return Claims{}, fmt.Errorf("%w: %q claim is not a valid user id", ErrInvalidToken, name)
	}
	if exp == nil {
		// Unreachable: the parser requires exp.
		return Claims{}, fmt.Errorf("%w: no exp claim", ErrInvalidToken)
	}
	return Claims{UserID: s, Expiry: exp.Time}, nil
}

// validUserID reports whether s is a user id as the protocol defines it: 1
// to 256 bytes of valid UTF-8 without control characters (C0, DEL, C1) or
// line and paragraph separators (U+2028, U+2029), exactly as online's user_id.
func validUserID(s string) bool {
	if len(s) == 0 || len(s) > maxUserIDBytes {
		return false
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// registeredClaims decodes the registered claims as jwt.RegisteredClaims
// does, except that exp and nbf must be JSON numbers: jwt's NumericDate
// also takes a string ("exp":"9999999999"), which RFC 7519 does not allow
// and other verifiers refuse, so a token would mean different things to
// different services.
type registeredClaims struct {
	jwt.RegisteredClaims
	Exp numericDate `json:"exp"` // shadows RegisteredClaims.ExpiresAt
	Nbf numericDate `json:"nbf"` // shadows RegisteredClaims.NotBefore
}

// GetExpirationTime implements jwt.Claims.
func (c *registeredClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return c.Exp.NumericDate, nil
}

// GetNotBefore implements jwt.Claims.
func (c *registeredClaims) GetNotBefore() (*jwt.NumericDate, error) {
	return c.Nbf.NumericDate, nil
}

// numericDate is a jwt.NumericDate that must be written as a JSON number.
type numericDate struct{ *jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return fmt.Errorf("%w: a date claim must be a number", ErrInvalidToken)
	}
	var n jwt.NumericDate
	if err := n.UnmarshalJSON(b); err != nil {
		return err
	}
	d.NumericDate = &n
	return nil
}
