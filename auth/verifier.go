// Package auth verifies the JSON Web Tokens that Switchboard clients present,
// and names the user they speak for.
//
// Keys come from up to four sources, any of which may be combined: an HMAC
// secret, a PEM file of public keys, a JWKS endpoint, and an OpenID Connect
// issuer whose discovery document names the JWKS endpoint. The token's `alg`
// only picks the family: HMAC algorithms (HS256/384/512) are checked against
// the secret alone, every other algorithm against public keys alone (JWKS by
// `kid`, else the PEM keys). The key itself, and the algorithms a key accepts,
// follow from configuration and the key's type, never from the token.
//
// A Verifier is built with New (no network I/O, no goroutine); when a JWKS
// endpoint or an OIDC issuer is configured, Run fetches and refreshes the keys
// in the background and Ready reports whether they have been fetched once.
package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of Config's zero fields, and fixed limits.
const (
	// DefaultUserClaim is the claim that holds the user id.
	DefaultUserClaim = "sub"
	// DefaultLeeway is the clock skew allowed on exp and nbf.
	DefaultLeeway = 30 * time.Second
	// DefaultRefreshInterval is how often the JWKS is fetched again.
	DefaultRefreshInterval = 10 * time.Minute
	// DefaultHTTPTimeout bounds each request of the default HTTP client.
	DefaultHTTPTimeout = 10 * time.Second
	// MaxTokenBytes caps a token's length; longer ones are refused unparsed.
	MaxTokenBytes = 8 << 10
	// NoLeeway, as Config.Leeway, disables clock-skew leeway (the zero
	// value means DefaultLeeway). Any negative duration does the same.
	NoLeeway time.Duration = -1
)

// Sentinel errors. Every error returned by Verify wraps ErrInvalidToken;
// ErrNoToken and ErrExpired wrap it too, so one errors.Is(err,
// ErrInvalidToken) test maps them all to the client code `unauthorized`.
var (
	// ErrInvalidToken: the token is missing, malformed, not signed by a
	// configured key, or its claims are not acceptable.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrNoToken: the token is empty. Wraps ErrInvalidToken.
	ErrNoToken error = &sentinel{"auth: no token", ErrInvalidToken}
	// ErrExpired: the token is authentic but its exp (plus leeway) has
	// passed. Wraps ErrInvalidToken.
	ErrExpired error = &sentinel{"auth: token expired", ErrInvalidToken}
	// ErrUnknownKey: no configured key matches the token's alg and kid.
	// Wraps ErrInvalidToken.
	ErrUnknownKey error = &sentinel{"auth: no key for this token", ErrInvalidToken}
	// ErrDisabled: Verify was called on a Verifier without key sources.
	// Wraps ErrInvalidToken.
	ErrDisabled error = &sentinel{"auth: no key source configured", ErrInvalidToken}
)

// sentinel is an error that is also a kind of its parent.
type sentinel struct {
	msg    string
	parent error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.parent }

// Config configures a Verifier. Its zero value configures no key source
// (auth disabled); every other zero field means the default stated beside it.
type Config struct {
	// Secret (JWT_SECRET) is the HMAC key for HS256, HS384 and HS512.
	Secret string
	// PublicKeyFile (JWT_PUBLIC_KEY) is the path of a PEM file holding one
	// or more public keys (PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY") or
	// certificates; RSA (2048 bits or more), ECDSA P-256/P-384/P-521 and
	// Ed25519. Private keys are refused.
	PublicKeyFile string
	// JWKSURL (JWKS_URL) is a JWK Set endpoint (http or https). Only its
	// RSA, EC and OKP (Ed25519) signing keys are used; `oct` keys are
	// ignored.
	JWKSURL string
	// OIDCIssuer (OIDC_ISSUER) is an OpenID Connect issuer: the JWKS URL is
	// read from {issuer}/.well-known/openid-configuration (unless JWKSURL
	// is also set), and the token's iss must equal it exactly.
	OIDCIssuer string
	// Issuer (JWT_ISSUER) is the required iss. Default: OIDCIssuer; empty
	// means iss is not checked. It must equal OIDCIssuer when both are set.
	Issuer string
	// Audience (JWT_AUDIENCE) must be one of the token's aud values when
	// set; empty means aud is not checked.
	Audience string
	// UserClaim (JWT_USER_CLAIM) names the claim holding the user id.
	// Default "sub". A claim of that exact name is used if present;
	// otherwise a dotted path reaches into nested objects
	// ("app_metadata.uid"). The value must be a string of 1–256 bytes of
	// UTF-8 without control characters.
	UserClaim string
	// Leeway (JWT_LEEWAY) is the clock skew allowed on exp and nbf.
	// Default 30s; a negative value (NoLeeway) means none.
	Leeway time.Duration
	// RefreshInterval is how often the JWKS is fetched again. Default 10
	// minutes. A failed fetch is retried sooner, with backoff.
	RefreshInterval time.Duration
	// HTTPClient fetches the discovery document and the JWKS. Default: a
	// client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives key-refresh failures and recoveries (once per change
	// of state, never a token). Default: warnings and errors as text on
	// stderr, so that keys that cannot be fetched are not a silent failure.
	Logger *slog.Logger
}

// Claims is what Switchboard keeps of a verified token.
type Claims struct {
	// UserID is the value of the configured user claim.
	UserID string
	// Expiry is the token's exp. The token stops being accepted at Expiry
	// plus Verifier.Leeway.
	Expiry time.Time
}

// Verifier verifies tokens against the configured key sources. It is safe
// for concurrent use. A nil *Verifier is disabled.
type Verifier struct {
	secret    *verificationKey // HS256/384/512; nil without JWT_SECRET
	static    *keySet          // PEM keys; nil without JWT_PUBLIC_KEY
	remote    *remote          // JWKS or OIDC; nil without either
	userClaim string
	userPath  []string // userClaim split on "."; nil for "sub"
	leeway    time.Duration
	log       *slog.Logger
}

// New checks cfg, reads the PEM file if one is named, and returns a
// Verifier. It does no network I/O and starts no goroutine: with a JWKS URL
// or an OIDC issuer, call Run. Without any key source the Verifier is
// returned disabled (Enabled reports false), not as an error.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{
		userClaim: cfg.UserClaim,
		leeway:    cfg.Leeway,
		log:       cfg.Logger,
	}
	if v.log == nil {
		v.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if v.userClaim == "" {
		v.userClaim = DefaultUserClaim
	}
	if strings.TrimSpace(v.userClaim) != v.userClaim {
		return nil, fmt.Errorf("auth: user claim %q has surrounding spaces", v.userClaim)
	}
	if v.userClaim != DefaultUserClaim {
		v.userPath = strings.Split(v.userClaim, ".")
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	interval := cfg.RefreshInterval
	switch {
	case interval == 0:
		interval = DefaultRefreshInterval
	case interval < 0:
		return nil, fmt.Errorf("auth: negative JWKS refresh interval %v", interval)
	}

	issuer := cfg.Issuer
	if cfg.OIDCIssuer != "" {
		if err := checkURL(cfg.OIDCIssuer); err != nil {
			return nil, fmt.Errorf("auth: OIDC issuer: %w", err)
		}
		warnPlainHTTP(v.log, "OIDC_ISSUER", cfg.OIDCIssuer)
		if issuer == "" {
			issuer = cfg.OIDCIssuer
		} else if issuer != cfg.OIDCIssuer {
			return nil, fmt.Errorf("auth: JWT issuer %q differs from OIDC issuer %q", issuer, cfg.OIDCIssuer)
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithStrictDecoding(),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	parsers := parserFactory(opts)

	if cfg.Secret != "" {
		if len(cfg.Secret) < 32 {
			v.log.Warn("auth: JWT_SECRET is shorter than 32 bytes; use at least 32 random bytes outside development")
		}
		v.secret = newHMACKey([]byte(cfg.Secret), parsers)
	}
	if cfg.PublicKeyFile != "" {
		keys, err := readPEMFile(cfg.PublicKeyFile, parsers)
		if err != nil {
			return nil, err
		}
		v.static = newKeySet(keys, parsers)
	}
	if cfg.JWKSURL != "" || cfg.OIDCIssuer != "" {
		if cfg.JWKSURL != "" {
			if err := checkURL(cfg.JWKSURL); err != nil {
				return nil, fmt.Errorf("auth: JWKS URL: %w", err)
			}
			warnPlainHTTP(v.log, "JWKS_URL", cfg.JWKSURL)
		}
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: DefaultHTTPTimeout}
		}
		v.remote = newRemote(remoteConfig{
			jwksURL:  cfg.JWKSURL,
			issuer:   cfg.OIDCIssuer,
			client:   client,
			interval: interval,
			log:      v.log,
			parsers:  parsers,
		})
	}
	return v, nil
}

// warnPlainHTTP warns about keys fetched over plain http from another host:
// whoever sits on the path could publish their own key.
func warnPlainHTTP(log *slog.Logger, what, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" {
		return
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return
	}
	log.Warn("auth: "+what+" uses plain http; anyone on the network path could substitute signing keys", "url", s)
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Enabled reports whether any key source is configured. A nil Verifier is
// disabled.
func (v *Verifier) Enabled() bool {
	return v != nil && (v.secret != nil || v.static != nil || v.remote != nil)
}

// Ready reports whether the Verifier can verify every configured kind of
// token: false until Run's first JWKS fetch (after discovery) succeeded,
// true at once when only a secret or a PEM file is configured, and true
// when auth is disabled. It never turns false again: a provider outage keeps
// the last good keys.
func (v *Verifier) Ready() bool {
	if v == nil || v.remote == nil {
		return true
	}
	return v.remote.ready.Load()
}

// Leeway is the clock skew allowed on exp and nbf: a token is refused once
// Claims.Expiry plus Leeway has passed. Zero for a nil Verifier.
func (v *Verifier) Leeway() time.Duration {
	if v == nil {
		return 0
	}
	return v.leeway
}

// Run fetches the JWKS (after OIDC discovery when configured), retries with
// backoff until that succeeds, refreshes it every RefreshInterval, and
// serves the immediate refreshes that Verify asks for on an unknown kid. It
// returns nil when ctx ends. Without a JWKS URL or OIDC issuer it only waits
// for ctx. Only one Run may be active at a time.
func (v *Verifier) Run(ctx context.Context) error {
	if v == nil || v.remote == nil {
		<-ctx.Done()
		return nil
	}
	return v.remote.run(ctx)
}

// header is the part of a JOSE header that selects the key.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks token's signature and claims and returns its user id and
// expiry. Every error wraps ErrInvalidToken; an authentic but expired token
// also wraps ErrExpired. ctx bounds the wait for a JWKS refresh when the
// token's kid is unknown (at most 5s). Safe for concurrent use.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if !v.Enabled() {
		return Claims{}, ErrDisabled
	}
	if token == "" {
		return Claims{}, ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxTokenBytes)
	}
	h, err := parseHeader(token)
	if err != nil {
		return Claims{}, err
	}
	k, err := v.selectKey(ctx, h)
	if err != nil {
		return Claims{}, err
	}
	if v.userPath == nil {
		var c registeredClaims
		if _, err := k.parser.ParseWithClaims(token, &c, k.keyfunc); err != nil {
			return Claims{}, tokenError(err)
		}
		return claimsFrom(c.Subject, c.Subject != "", c.Exp.NumericDate, v.userClaim)
	}
	c := jwt.MapClaims{}
	if _, err := k.parser.ParseWithClaims(token, c, k.keyfunc); err != nil {
		return Claims{}, tokenError(err)
	}
	exp, err := c.GetExpirationTime()
	if err != nil {
		return Claims{}, tokenError(err)
	}
	user, ok := lookupClaim(c, v.userClaim, v.userPath)
	return claimsFrom(user, ok, exp, v.userClaim)
}

// parseHeader decodes the JOSE header of a compact JWS with exactly three
// segments. It only selects a key: the parser chosen with that key decodes
// the header again and enforces the algorithms the key allows, so a header
// read differently here cannot get a token accepted by a wrong key.
func parseHeader(token string) (header, error) {
	dot := strings.IndexByte(token, '.')
	if dot < 0 || strings.Count(token[dot+1:], ".") != 1 {
		return header{}, fmt.Errorf("%w: not a compact JWS of three segments", ErrInvalidToken)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token[:dot])
	if err != nil {
		return header{}, fmt.Errorf("%w: header is not base64url", ErrInvalidToken)
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		return header{}, fmt.Errorf("%w: header is not a JSON object with string alg and kid", ErrInvalidToken)
	}
	if len(h.Crit) > 0 {
		// RFC 7515 §4.1.11: extensions listed in crit must be understood,
		// and Switchboard understands none (b64=false included).
		return header{}, fmt.Errorf("%w: unsupported crit header", ErrInvalidToken)
	}
	return h, nil
}

// selectKey picks the key for a token by configuration and kid. The alg
// only decides between the HMAC secret and the public keys.
func (v *Verifier) selectKey(ctx context.Context, h header) (*verificationKey, error) {
	if hmacAlgs[h.Alg] {
		if v.secret == nil {
			return nil, fmt.Errorf("%w: %s tokens need JWT_SECRET", ErrUnknownKey, h.Alg)
		}
		return v.secret, nil
	}
	if !publicAlgs[h.Alg] {
		return nil, fmt.Errorf("%w: algorithm not accepted", ErrInvalidToken)
	}
	if h.Kid != "" && v.remote != nil {
		if k := v.remote.key(ctx, h.Kid); k != nil {
			return k, nil
		}
	}
	if v.static != nil {
		if k := v.static.byAlg[h.Alg]; k != nil {
			return k, nil
		}
	}
	if h.Kid == "" && v.remote != nil {
		if ks := v.remote.keys.Load(); ks != nil {
			if k := ks.byAlg[h.Alg]; k != nil {
				return k, nil
			}
		}
	}
	if h.Kid != "" && v.remote != nil {
		return nil, fmt.Errorf("%w: unknown kid", ErrUnknownKey)
	}
	return nil, fmt.Errorf("%w: no %s key", ErrUnknownKey, h.Alg)
}

// tokenError wraps an error of the JWT parser.
func tokenError(err error) error {
	if errors.Is(err, jwt.ErrTokenExpired) {
		return fmt.Errorf("%w: %w", ErrExpired, err)
	}
	return fmt.Errorf("%w: %w", ErrInvalidToken, err)
}
