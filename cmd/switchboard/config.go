package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/session"
)

// option is one setting, read from a flag, else its environment variable,
// else its default. check validates a non-empty value; its error says what
// is wanted, and example is a valid value shown beside it.
type option struct {
	name    string // flag name; the environment variable is its upper-snake form unless env is set
	env     string
	def     string
	usage   string
	check   func(string) error // nil: any value
	example string
}

// options lists every setting with its environment variable, default and
// validator. Adding a setting: a line here, a field in config, and a line in
// parseConfig; README and docs name it (scripts/check-docs.sh checks).
var options = []option{
	{name: "addr", env: "SWITCHBOARD_ADDR", def: ":8080", usage: "listen address", check: hostPort, example: ":8080"},
	{name: "node-id", env: "SWITCHBOARD_NODE_ID", def: "", usage: "this node's id, unique in the cluster (default: hostname plus a random suffix)"},
	{name: "redis-url", def: "", usage: "Redis URL (redis://, rediss://, or several comma-separated seeds for a Redis Cluster); empty: in-memory store, one node", check: redisURL, example: "redis://127.0.0.1:6379"},
	{name: "redis-prefix", def: "sb:", usage: "prefix of every Redis key"},
	{name: "allowed-origins", def: "", usage: "comma-separated Origins allowed to open WebSockets (scheme://host[:port], or *); the server's own host is always allowed", check: origins, example: "https://app.example.com,http://localhost:3000"},
	{name: "max-message-bytes", def: "65536", usage: "largest message a client may send (at least 512); larger ones close the connection with 1009", check: intAtLeast(512), example: "65536"},
	{name: "online-timeout", def: "10s", usage: "time a new connection has to send online", check: positiveDuration, example: "10s"},
	{name: "rate-limit", def: "100", usage: "messages per second per connection", check: positiveFloat, example: "100"},
	{name: "rate-burst", def: "200", usage: "burst of messages per connection", check: intAtLeast(1), example: "200"},
	{name: "presence-events", def: "true", usage: "send join/leave events", check: boolean, example: "false"},
	{name: "presence-events-limit", def: "1000", usage: "send join/leave only while an action has at most this many users", check: intAtLeast(1), example: "1000"},
	{name: "heartbeat-ttl", def: "15s", usage: "lifetime of a node's heartbeat (at least 1s); other nodes remove a dead node's bindings after it", check: durationAtLeast(time.Second), example: "15s"},
	{name: "shutdown-timeout", def: "10s", usage: "time allowed for a graceful shutdown", check: positiveDuration, example: "10s"},
	{name: "outbound-queue", def: "4", usage: "frames handed to a connection's socket writer at once; more wait in its backlog", check: intAtLeast(1), example: "4"},
	{name: "outbound-buffer-bytes", def: "1048576", usage: "bytes that may wait in a connection's backlog before it is closed as a slow consumer (1008)", check: intAtLeast(1), example: "1048576"},
	{name: "max-connections-per-user", def: "0", usage: "a user's connections across all actions and nodes; one more online is refused with too_many_connections (0: no cap)", check: intAtLeast(0), example: "10"},
	{name: "jwt-secret", def: "", usage: "HMAC secret for HS256/384/512 tokens; enables auth"},
	{name: "jwt-public-key", def: "", usage: "path to a PEM public key (RSA, ECDSA, Ed25519); enables auth", check: readableFile, example: "/etc/switchboard/jwt.pem"},
	{name: "jwks-url", def: "", usage: "JWKS endpoint; enables auth", check: httpURL, example: "https://example.eu.auth0.com/.well-known/jwks.json"},
	{name: "oidc-issuer", def: "", usage: "OIDC issuer: JWKS from its discovery document, iss must equal it; enables auth", check: httpURL, example: "https://accounts.google.com"},
	{name: "jwt-issuer", def: "", usage: "required iss claim (default: the OIDC issuer)"},
	{name: "jwt-audience", def: "", usage: "required aud claim"},
	{name: "jwt-user-claim", def: "sub", usage: "claim holding the user id; a dotted path reaches nested claims"},
	{name: "jwt-leeway", def: "30s", usage: "clock skew allowed on exp and nbf (0: none)", check: durationAtLeast(0), example: "30s"},
	{name: "auth-required", def: "true", usage: "with auth on, refuse clients without a token (false: anonymous clients get their connection id as user id)", check: boolean, example: "false"},
	{name: "admin-token", def: "", usage: "bearer token of the server API under /api/ (not served when empty)"},
	{name: "tls-cert", def: "", usage: "PEM certificate chain: serve HTTPS and wss:// (with --tls-key); reloaded when the file changes", check: readableFile, example: "/etc/letsencrypt/live/example.com/fullchain.pem"},
	{name: "tls-key", def: "", usage: "PEM private key of --tls-cert; reloaded when the file changes", check: readableFile, example: "/etc/letsencrypt/live/example.com/privkey.pem"},
	{name: "http-idle-timeout", def: "60s", usage: "time an idle keep-alive HTTP connection (API, health, page) is kept open", check: positiveDuration, example: "60s"},
	{name: "http-read-timeout", def: "30s", usage: "time to read a whole plain HTTP request, headers and body (headers: at most 10s)", check: positiveDuration, example: "30s"},
	{name: "demo-page", def: "true", usage: "serve the demo chat page at / (false: / answers 404)", check: boolean, example: "false"},
	{name: "metrics-addr", def: "", usage: "serve /metrics (and /debug/pprof/ with --pprof) on this address instead of the main one", check: hostPort, example: "127.0.0.1:9090"},
	{name: "pprof", def: "false", usage: "serve Go's profiler under /debug/pprof/ (keep it behind your firewall)", check: boolean, example: "true"},
	{name: "log-level", def: "info", usage: "debug, info, warn or error", check: oneOf("debug", "info", "warn", "error"), example: "debug"},
	{name: "log-format", def: "text", usage: "text or json", check: oneOf("text", "json"), example: "json"},

	// The mailbox (docs/protocol.md, "The mailbox").
	{name: "mailbox", def: "true", usage: "keep direct messages in the recipient's mailbox, numbered with seq, for catching up (false: user_offline, no seq)"},
	{name: "mailbox-size", def: "1000", usage: "messages kept per mailbox (user and action); older ones are dropped"},
	{name: "mailbox-ttl", def: "168h", usage: "how long a kept message lives"},
	{name: "dedup-window", def: "5m", usage: "a direct message whose id repeats within this time is neither kept nor delivered again"},
	{name: "mailbox-memory-limit", def: "268435456", usage: "in-memory mode: bytes all mailboxes keep in total (a message counts its size plus 64, a remembered id its length plus 160); the oldest go first"},

	// Protection of a public deployment (docs/operations.md); parsed by parseLimits.
	{name: "outbound-stall", def: "2s", usage: "a connection whose backlog is over OUTBOUND_BUFFER_BYTES and whose socket took no frame for this long is closed as a slow consumer", check: positiveDuration, example: "2s"},
	{name: "outbound-max-bytes", def: "67108864", usage: "backlog at which even a connection that reads is closed as a slow consumer (it reads more slowly than it is sent to)", check: intAtLeast(1), example: "67108864"},
	{name: "max-connections", def: "0", usage: "WebSocket connections per node; beyond it upgrades get 503 with Retry-After (0: no cap)", check: intAtLeast(0), example: "50000"},
	{name: "handshake-rate", def: "0", usage: "WebSocket upgrades per second per client IP; beyond it 429 with Retry-After (0: off)", check: nonNegativeFloat, example: "2"},
	{name: "handshake-burst", def: "0", usage: "burst of upgrades per client IP (0: twice HANDSHAKE_RATE)", check: intAtLeast(0), example: "10"},
	{name: "trusted-proxies", def: "", usage: "comma-separated CIDRs of proxies whose X-Forwarded-For gives the client IP", check: cidrList, example: "10.0.0.0/8,fd00::/8"},

	// Webhooks (docs/webhooks.md; parsed in config_webhook.go).
	{name: "webhook-url", def: "", usage: "URL that receives user.online, user.offline and message.undelivered events (Standard Webhooks); empty: off", check: httpURL, example: "https://backend.example.com/switchboard/events"},
	{name: "webhook-secret", def: "", usage: "whsec_ followed by the base64 of the signing key; required with WEBHOOK_URL", check: webhookSecret, example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
	{name: "webhook-timeout", def: "5s", usage: "time the receiver has to answer one attempt", check: positiveDuration, example: "5s"},
	{name: "webhook-retry-for", def: "10m", usage: "how long an event is retried, from its first attempt, before it is dropped", check: positiveDuration, example: "10m"},
	{name: "webhook-queue-limit", def: "100000", usage: "events queued at most (cluster-wide with Redis); beyond it the oldest are dropped", check: intAtLeast(1), example: "100000"},
	{name: "webhook-offline-delay", def: "5s", usage: "user.offline waits this long for the user to come back; a return within it emits nothing", check: positiveDuration, example: "5s"},
}

func (o option) envName() string {
	if o.env != "" {
		return o.env
	}
	return strings.ToUpper(strings.ReplaceAll(o.name, "-", "_"))
}

// config is the parsed configuration.
type config struct {
	Addr                string
	NodeID              string
	RedisURL            string
	RedisPrefix         string
	AllowedOrigins      []string
	MaxMessageBytes     int64
	OnlineTimeout       time.Duration
	RateLimit           float64
	RateBurst           int
	MaxConnsPerUser     int
	PresenceEvents      bool
	PresenceEventsLimit int
	HeartbeatTTL        time.Duration
	ShutdownTimeout     time.Duration
	OutboundQueue       int
	OutboundBufferBytes int
	JWTSecret           string
	JWTPublicKey        string
	JWKSURL             string
	OIDCIssuer          string
	JWTIssuer           string
	JWTAudience         string
	JWTUserClaim        string
	JWTLeeway           time.Duration
	AuthRequired        bool
	AdminToken          string
	TLSCert             string
	TLSKey              string
	HTTPIdleTimeout     time.Duration
	HTTPReadTimeout     time.Duration
	DemoPage            bool
	MetricsAddr         string
	Pprof               bool
	LogLevel            string
	LogFormat           string

	// The mailbox.
	Mailbox            bool
	MailboxSize        int
	MailboxTTL         time.Duration
	DedupWindow        time.Duration
	MailboxMemoryLimit int64

	// Protection of a public deployment.
	limitsConfig

	// Webhooks.
	Webhook webhookConfig
}

// limitsConfig holds the options that protect a public deployment.
type limitsConfig struct {
	OutboundStall    time.Duration
	OutboundMaxBytes int
	MaxConnections   int
	HandshakeRate    float64
	HandshakeBurst   int
	TrustedProxies   []netip.Prefix
}

// parseLimits reads the limitsConfig options.
func parseLimits(p *parser) limitsConfig {
	l := limitsConfig{
		OutboundStall:    p.duration("outbound-stall"),
		OutboundMaxBytes: p.int("outbound-max-bytes"),
		MaxConnections:   p.count("max-connections"),
		HandshakeRate:    p.floatOrZero("handshake-rate"),
		HandshakeBurst:   p.count("handshake-burst"),
	}
	ps, err := parseCIDRs(p.get("trusted-proxies"))
	if err != nil {
		p.fail("trusted-proxies", p.get("trusted-proxies"), err)
	}
	l.TrustedProxies = ps
	return l
}

// parseCIDRs reads a comma-separated list of CIDRs or single addresses.
func parseCIDRs(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range splitList(v) {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s) // a single address is its own /32 or /128
			if aerr != nil {
				return nil, errors.New("want CIDRs such as 10.0.0.0/8, or addresses")
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
}

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help requested")

// parseConfig reads flags from args, then the environment, then defaults.
// --help prints the usage to out. Every value is checked; the error names
// each invalid option with its value and an example.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, printed once by main
	fs.Usage = func() {}
	vals := make(map[string]*string, len(options))
	for _, o := range options {
		vals[o.name] = fs.String(o.name, "", o.usage)
	}
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out)
			return config{}, errHelp
		}
		return config{}, flagError(err, optionNames(), "switchboard --help")
	}
	if *version {
		return config{}, errVersion
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (see switchboard --help)", fs.Arg(0))
	}
	byName := make(map[string]option, len(options))
	for _, o := range options {
		byName[o.name] = o
	}
	// Check every value first, so that one start shows every mistake.
	var errs []error
	for _, o := range options {
		v, src := *vals[o.name], "--"+o.name
		if v == "" {
			v, src = getenv(o.envName()), o.envName()
		}
		if v == "" || o.check == nil {
			continue
		}
		if err := o.check(v); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s=%q: %v (example: %s=%s)", src, v, err, src, o.example))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	get := func(name string) string {
		o, ok := byName[name]
		if !ok {
			panic("unknown option " + name)
		}
		if v := *vals[name]; v != "" {
			return v
		}
		if v := getenv(o.envName()); v != "" {
			return v
		}
		return o.def
	}
	// Values with a check are valid now; p also checks those without one.
	p := parser{get: get}
	c := config{
		Addr:                get("addr"),
		NodeID:              get("node-id"),
		RedisURL:            get("redis-url"),
		RedisPrefix:         get("redis-prefix"),
		AllowedOrigins:      splitList(get("allowed-origins")),
		MaxMessageBytes:     int64(p.int("max-message-bytes")),
		OnlineTimeout:       p.duration("online-timeout"),
		RateLimit:           p.float("rate-limit"),
		RateBurst:           p.int("rate-burst"),
		PresenceEvents:      p.bool("presence-events"),
		PresenceEventsLimit: p.int("presence-events-limit"),
		HeartbeatTTL:        p.duration("heartbeat-ttl"),
		ShutdownTimeout:     p.duration("shutdown-timeout"),
		OutboundQueue:       p.int("outbound-queue"),
		OutboundBufferBytes: p.int("outbound-buffer-bytes"),
		MaxConnsPerUser:     p.count("max-connections-per-user"),
		JWTSecret:           get("jwt-secret"),
		JWTPublicKey:        get("jwt-public-key"),
		JWKSURL:             get("jwks-url"),
		OIDCIssuer:          get("oidc-issuer"),
		JWTIssuer:           get("jwt-issuer"),
		JWTAudience:         get("jwt-audience"),
		JWTUserClaim:        get("jwt-user-claim"),
		JWTLeeway:           p.durationOrZero("jwt-leeway"),
		AuthRequired:        p.bool("auth-required"),
		AdminToken:          get("admin-token"),
		TLSCert:             get("tls-cert"),
		TLSKey:              get("tls-key"),
		HTTPIdleTimeout:     p.duration("http-idle-timeout"),
		HTTPReadTimeout:     p.duration("http-read-timeout"),
		DemoPage:            p.bool("demo-page"),
		MetricsAddr:         get("metrics-addr"),
		Pprof:               p.bool("pprof"),
		LogLevel:            strings.ToLower(get("log-level")),
		LogFormat:           strings.ToLower(get("log-format")),
	}
	c.Mailbox = p.bool("mailbox")
	c.MailboxSize = p.int("mailbox-size")
	c.MailboxTTL = p.duration("mailbox-ttl")
	c.DedupWindow = p.duration("dedup-window")
	c.MailboxMemoryLimit = int64(p.int("mailbox-memory-limit"))
	c.limitsConfig = parseLimits(&p)
	c.Webhook = parseWebhook(&p)
	if p.err != nil {
		return config{}, p.err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return config{}, errors.New("TLS_CERT and TLS_KEY go together: set both (example: TLS_CERT=/etc/letsencrypt/live/example.com/fullchain.pem TLS_KEY=/etc/letsencrypt/live/example.com/privkey.pem) or neither")
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	return c, nil
}

// parser converts option values, keeping the first error: for options
// without a check function, it is their check.
type parser struct {
	get func(string) string
	err error
}

func (p *parser) fail(name, v string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("invalid %s=%q: %v", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), v, err)
	}
}

// count reads a non-negative integer (0 usually meaning "no limit").
func (p *parser) count(name string) int {
	v := p.get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		p.fail(name, v, errors.New("want a non-negative integer (0: none)"))
	}
	return n
}

func (p *parser) int(name string) int {
	v := p.get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.fail(name, v, errors.New("want a positive integer"))
	}
	return n
}

func (p *parser) floatOrZero(name string) float64 {
	v := p.get(name)
	if err := nonNegativeFloat(v); err != nil {
		p.fail(name, v, err)
	}
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

func (p *parser) float(name string) float64 {
	v := p.get(name)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		p.fail(name, v, errors.New("want a positive number"))
	}
	return f
}

func (p *parser) bool(name string) bool {
	v := p.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, errors.New("want true or false"))
	}
	return b
}

func (p *parser) duration(name string) time.Duration {
	v := p.get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, v, errors.New("want a positive Go duration such as 30s or 2m"))
	}
	return d
}

// durationOrZero is duration allowing 0 (JWT_LEEWAY=0: no leeway).
func (p *parser) durationOrZero(name string) time.Duration {
	v := p.get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, v, errors.New("want a Go duration such as 30s, or 0"))
	}
	return d
}

// Validators. Each returns what is wanted, for the error message.

func hostPort(v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		return errors.New("want host:port or :port")
	}
	return nil
}

func intAtLeast(min int) func(string) error {
	return func(v string) error {
		if n, err := strconv.Atoi(v); err != nil || n < min {
			return fmt.Errorf("want an integer of at least %d", min)
		}
		return nil
	}
}

func nonNegativeFloat(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return errors.New("want a non-negative number (0: off)")
	}
	return nil
}

func cidrList(v string) error {
	_, err := parseCIDRs(v)
	return err
}

func positiveFloat(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
		return errors.New("want a positive number")
	}
	return nil
}

func boolean(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return errors.New("want true or false")
	}
	return nil
}

func positiveDuration(v string) error {
	if d, err := time.ParseDuration(v); err != nil || d <= 0 {
		return errors.New("want a positive Go duration such as 30s or 2m")
	}
	return nil
}

func durationAtLeast(min time.Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return errors.New("want a Go duration such as 30s or 2m")
		case d < min && min == 0:
			return errors.New("want a Go duration such as 30s, or 0")
		case d < min:
			return fmt.Errorf("want a Go duration of at least %v", min)
		}
		return nil
	}
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, w := range vals {
			if strings.EqualFold(v, w) {
				return nil
			}
		}
		return fmt.Errorf("want %s or %s", strings.Join(vals[:len(vals)-1], ", "), vals[len(vals)-1])
	}
}

func readableFile(v string) error {
	f, err := os.Open(v)
	if err != nil {
		return fmt.Errorf("cannot read the file: %v", errors.Unwrap(err))
	}
	return f.Close()
}

func httpURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("want an http:// or https:// URL")
	}
	return nil
}

// origins checks ALLOWED_ORIGINS: `*` or Origins as browsers send them,
// scheme://host[:port] with nothing after.
func origins(v string) error {
	for _, o := range splitList(v) {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || strings.TrimRight(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%q is not an Origin; want scheme://host[:port] (a browser's Origin never lacks the scheme), or *", o)
		}
	}
	return nil
}

// redisURL checks REDIS_URL the way the store will read it (no I/O).
func redisURL(v string) error {
	first := strings.TrimSpace(strings.Split(v, ",")[0])
	if !strings.Contains(first, "://") {
		return errors.New("no scheme; want redis://host:port, rediss://host:port, unix:///path, or comma-separated seeds of a Redis Cluster")
	}
	client, err := session.NewRedisClient(v)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "session: ")
		msg = strings.TrimPrefix(msg, "REDIS_URL: ")
		return errors.New(msg)
	}
	return client.Close()
}

// flagError rewrites the flag package's error for an unknown flag, which
// shows a single dash, and suggests the closest option.
func flagError(err error, names []string, help string) error {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, undefined); ok {
		name = strings.TrimLeft(name, "-")
		if s := closest(name, names); s != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s? (see %s)", name, s, help)
		}
		return fmt.Errorf("unknown flag --%s (see %s)", name, help)
	}
	return fmt.Errorf("%v (see %s)", err, help)
}

func optionNames() []string {
	names := make([]string, 0, len(options)+1)
	for _, o := range options {
		names = append(names, o.name)
	}
	return append(names, "version")
}

// closest returns the name within edit distance 2 of s (a typo), or "".
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD && d > 0 {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownVariables returns a warning for each variable of environ (KEY=value
// lines) that is not one of ours but is close to one (RATE_LIMT), or carries
// our SWITCHBOARD_ prefix.
func unknownVariables(environ []string) []string {
	ours := make([]string, 0, len(options))
	known := make(map[string]bool, len(options))
	for _, o := range options {
		ours = append(ours, o.envName())
		known[o.envName()] = true
	}
	var warnings []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if known[k] || len(k) < 5 {
			continue
		}
		if s := closest(k, ours); s != "" {
			warnings = append(warnings, fmt.Sprintf("unknown variable %s ignored; did you mean %s?", k, s))
		} else if strings.HasPrefix(k, "SWITCHBOARD_") {
			warnings = append(warnings, fmt.Sprintf("unknown variable %s ignored (see switchboard --help)", k))
		}
	}
	return warnings
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return host + "-" + hex.EncodeToString(b[:])
}

// usage prints every option with its flag, environment variable and default.
func usage(w io.Writer) {
	fmt.Fprintf(w, `Switchboard %s: a WebSocket server for user-addressed messaging.

Usage:
  switchboard [options]            run the server
  switchboard token [options]      mint an HS256 token for local development (see: switchboard token --help)
  switchboard webhook test         send a signed test event to WEBHOOK_URL and show the answer
  switchboard --version            print the version
  switchboard --help               print this help

Options (a flag wins over its environment variable):
`, buildVersion())
	for _, o := range options {
		def := o.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-22s %-22s default %s\n      %s\n", o.name, o.envName(), def, o.usage)
	}
	fmt.Fprintln(w, "\nDocumentation: README.md and docs/ in the source tree.")
}
