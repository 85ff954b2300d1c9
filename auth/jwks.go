package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Timing and size limits of the remote key source.
const (
	// unknownKIDInterval: an unknown kid triggers an immediate refresh the
	// first time, later ones at most once per interval (docs/auth.md).
	unknownKIDInterval = 10 * time.Second
	// lookupTimeout bounds how long Verify waits for a refresh it asked for.
	lookupTimeout = 5 * time.Second
	// fetchTimeout bounds one HTTP request, whatever the client's timeout.
	fetchTimeout = 10 * time.Second
	// retryMin and retryMax bound the backoff after a failed fetch; it never
	// exceeds the refresh interval either.
	retryMin = time.Second
	retryMax = 5 * time.Minute
	// maxDocumentBytes caps a JWKS or discovery document.
	maxDocumentBytes = 1 << 20
)

// Why not keyfunc.NewDefaultOverrideCtx and its jwkset HTTP storage: that
// storage starts its own refresh goroutine (which Run could not wait for),
// never retries a failed first fetch before the next interval, replaces the
// keys with an empty set when the provider answers {} or only unusable keys,
// reads a response of any size, and blocks a verifying goroutine in
// rate.Limiter.Wait on an unknown kid. keyfunc's jwt.Keyfunc also hands out
// an `oct` key as an HMAC secret, and all keys for a token without kid.
// So the fetching and scheduling are here, in a few lines, and jwkset (the
// library keyfunc v3.9.1 is built on, at the version it requires) decodes
// and validates each JWK.

type remoteConfig struct {
	jwksURL  string // fixed JWKS URL; "" to discover it from issuer
	issuer   string // OIDC issuer; "" without discovery
	client   *http.Client
	interval time.Duration
	log      *slog.Logger
	parsers  func([]string) *jwt.Parser
}

// remote is the JWKS key source. Verify reads keys lock-free; everything
// else runs in Run's goroutine.
type remote struct {
	remoteConfig
	keys    atomic.Pointer[keySet]
	ready   atomic.Bool
	running atomic.Bool
	limiter *rate.Limiter // unknown-kid refreshes
	wake    chan struct{} // Verify asks Run for a refresh; capacity 1

	mu   sync.Mutex
	next chan struct{} // closed when the next refresh to start has ended

	// Owned by Run's goroutine.
	discovered string      // JWKS URL read from the discovery document
	failing    bool        // the last refresh failed (and was logged)
	ignored    ignoredKeys // of the last fetched set
}

func newRemote(cfg remoteConfig) *remote {
	return &remote{
		remoteConfig: cfg,
		limiter:      rate.NewLimiter(rate.Every(unknownKIDInterval), 1),
		wake:         make(chan struct{}, 1),
		next:         make(chan struct{}),
	}
}

// key returns the key with that kid. An unknown kid asks Run for an
// immediate refresh (rate limited) and waits for it, bounded by ctx and
// lookupTimeout. It returns nil when the kid stays unknown.
func (r *remote) key(ctx context.Context, kid string) *verificationKey {
	if ks := r.keys.Load(); ks != nil {
		if k := ks.byKID[kid]; k != nil {
			return k
		}
	}
	if !r.running.Load() || !r.limiter.Allow() {
		return nil
	}
	r.mu.Lock()
	done := r.next
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default: // a refresh is already requested
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return nil
	}
	if ks := r.keys.Load(); ks != nil {
		return ks.byKID[kid]
	}
	return nil
}

// run is Verifier.Run for a remote key source.
func (r *remote) run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("auth: Run is already running")
	}
	defer func() {
		r.running.Store(false)
		r.mu.Lock()
		close(r.next) // release waiters; no refresh will come
		r.next = make(chan struct{})
		r.mu.Unlock()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-r.wake:
		}
		err := r.refresh(ctx)
		if ctx.Err() != nil {
			return nil
		}
		delay := r.interval
		if err != nil {
			failures++
			delay = r.backoff(failures)
		} else {
			failures = 0
		}
		timer.Reset(delay)
	}
}

// backoff is the delay before retry number n (from 1): exponential from
// retryMin, at most retryMax and the refresh interval, with jitter.
func (r *remote) backoff(n int) time.Duration {
	d := retryMax
	if n < 20 {
		d = min(retryMin<<(n-1), retryMax)
	}
	d = min(d, r.interval)
	return d/2 + rand.N(d/2+1)
}

// refresh fetches the key set once, keeping the current keys on failure,
// and logs changes between failing and working.
func (r *remote) refresh(ctx context.Context) error {
	r.mu.Lock()
	done := r.next
	r.next = make(chan struct{})
	r.mu.Unlock()
	defer close(done)

	ks, ignored, err := r.fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		if !r.failing {
			r.failing = true
			msg := "auth: fetching signing keys failed; keeping the last good keys"
			if !r.ready.Load() {
				msg = "auth: fetching signing keys failed; tokens needing them are refused until a fetch succeeds"
			}
			r.log.Error(msg, "url", r.url(), "err", err)
		} else {
			r.log.Debug("auth: fetching signing keys failed again", "url", r.url(), "err", err)
		}
		return err
	}
	r.keys.Store(ks)
	if ignored != r.ignored {
		// Keycloak, for one, always publishes an encryption key: worth a
		// line, not a warning. A symmetric key in a public JWKS is one.
		r.ignored = ignored
		level := slog.LevelInfo
		if ignored.oct > 0 {
			level = slog.LevelWarn
		}
		if ignored.total > 0 {
			r.log.Log(ctx, level, "auth: JWKS keys not used (symmetric, not for signatures, or unsupported)",
				"url", r.url(), "ignored", ignored.total, "symmetric", ignored.oct)
		}
	}
	switch {
	case !r.ready.Load():
		r.ready.Store(true)
		r.log.Info("auth: signing keys fetched", "url", r.url(), "keys", ks.size)
	case r.failing:
		r.log.Info("auth: signing keys fetched again", "url", r.url(), "keys", ks.size)
	}
	r.failing = false
	return nil
}

// url is the JWKS URL in use, or the issuer before discovery.
func (r *remote) url() string {
	switch {
	case r.jwksURL != "":
		return r.jwksURL
	case r.discovered != "":
		return r.discovered
	}
	return r.issuer
}

// fetch discovers the JWKS URL if needed (once), then gets and decodes the
// key set. A set without any usable key is an error.
func (r *remote) fetch(ctx context.Context) (*keySet, ignoredKeys, error) {
	u := r.jwksURL
	if u == "" {
		if r.discovered == "" {
			d, err := r.discover(ctx)
			if err != nil {
				return nil, ignoredKeys{}, err
			}
			r.discovered = d
		}
		u = r.discovered
	}
	var set jwkset.JWKSMarshal
	if err := r.getJSON(ctx, u, &set); err != nil {
		return nil, ignoredKeys{}, err
	}
	keys, ignored := r.usableKeys(set.Keys)
	if len(keys) == 0 {
		return nil, ignoredKeys{}, fmt.Errorf("auth: JWKS %s holds no usable signing key (%d ignored)", u, ignored.total)
	}
	return newKeySet(keys, r.parsers), ignored, nil
}

// ignoredKeys counts the keys of a JWK Set that are not used.
type ignoredKeys struct {
	total int
	oct   int // symmetric keys, a subset of total
}

// usableKeys converts the RSA, EC and OKP signing keys of a JWK Set;
// everything else (oct keys above all, encryption keys, unsupported curves,
// short RSA keys, algorithms that do not fit the key) is left out and counted.
func (r *remote) usableKeys(jwks []jwkset.JWKMarshal) ([]*verificationKey, ignoredKeys) {
	keys := make([]*verificationKey, 0, len(jwks))
	var ignored ignoredKeys
	for _, m := range jwks {
		k, err := r.usableKey(m)
		if err != nil {
			r.log.Debug("auth: JWKS key ignored", "kid", m.KID, "kty", string(m.KTY), "err", err)
			ignored.total++
			if m.KTY == jwkset.KtyOct {
				ignored.oct++
			}
			continue
		}
		keys = append(keys, k)
	}
	return keys, ignored
}

func (r *remote) usableKey(m jwkset.JWKMarshal) (*verificationKey, error) {
	switch m.KTY {
	case jwkset.KtyRSA, jwkset.KtyEC, jwkset.KtyOKP:
	default:
		return nil, fmt.Errorf("key type %q is not an asymmetric signing key", m.KTY)
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, fmt.Errorf("use %q", m.USE)
	}
	// Public parts only: a private key published by mistake is not used as such.
	m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH, m.K = "", "", "", "", "", "", nil, ""
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, err
	}
	return newPublicKey(m.KID, jwk.Key(), string(m.ALG), r.parsers)
}

// getJSON GETs u and decodes its JSON body (at most maxDocumentBytes) into v.
func (r *remote) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("auth: GET %s: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("auth: GET %s: larger than %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("auth: GET %s: %w", u, err)
	}
	return nil
}
