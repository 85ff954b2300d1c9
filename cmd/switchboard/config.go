package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// option is one setting, read from a flag, else its environment variable,
// else its default.
type option struct {
	name  string // flag name; the environment variable is its upper-snake form unless env is set
	env   string
	def   string
	usage string
}

// options lists every setting with its environment variable and default.
var options = []option{
	{name: "addr", env: "SWITCHBOARD_ADDR", def: ":8080", usage: "listen address"},
	{name: "node-id", env: "SWITCHBOARD_NODE_ID", def: "", usage: "this node's id, unique in the cluster (default: hostname plus a random suffix)"},
	{name: "redis-url", def: "", usage: "Redis URL (redis://, rediss://, or several comma-separated seeds for a Redis Cluster); empty: in-memory store, one node"},
	{name: "redis-prefix", def: "sb:", usage: "prefix of every Redis key"},
	{name: "allowed-origins", def: "", usage: "comma-separated Origins allowed to open WebSockets (scheme://host[:port], or *); the server's own host is always allowed"},
	{name: "max-message-bytes", def: "65536", usage: "largest message a client may send; larger ones close the connection with 1009"},
	{name: "online-timeout", def: "10s", usage: "time a new connection has to send online"},
	{name: "rate-limit", def: "100", usage: "messages per second per connection"},
	{name: "rate-burst", def: "200", usage: "burst of messages per connection"},
	{name: "presence-events", def: "true", usage: "send join/leave events"},
	{name: "presence-events-limit", def: "1000", usage: "send join/leave only while an action has at most this many users"},
	{name: "heartbeat-ttl", def: "15s", usage: "lifetime of a node's heartbeat; other nodes remove a dead node's bindings after it"},
	{name: "shutdown-timeout", def: "10s", usage: "time allowed for a graceful shutdown"},
	{name: "outbound-queue", def: "4", usage: "frames handed to a connection's socket writer at once; more wait in its backlog"},
	{name: "outbound-buffer-bytes", def: "1048576", usage: "bytes that may wait in a connection's backlog before it is closed as a slow consumer (1008)"},
	{name: "jwt-secret", def: "", usage: "HMAC secret for HS256/384/512 tokens; enables auth"},
	{name: "jwt-public-key", def: "", usage: "path to a PEM public key (RSA, ECDSA, Ed25519); enables auth"},
	{name: "jwks-url", def: "", usage: "JWKS endpoint; enables auth"},
	{name: "oidc-issuer", def: "", usage: "OIDC issuer: JWKS from its discovery document, iss must equal it; enables auth"},
	{name: "jwt-issuer", def: "", usage: "required iss claim (default: the OIDC issuer)"},
	{name: "jwt-audience", def: "", usage: "required aud claim"},
	{name: "jwt-user-claim", def: "sub", usage: "claim holding the user id; a dotted path reaches nested claims"},
	{name: "jwt-leeway", def: "30s", usage: "clock skew allowed on exp and nbf (0: none)"},
	{name: "auth-required", def: "true", usage: "with auth on, refuse clients without a token (false: anonymous clients get their connection id as user id)"},
	{name: "admin-token", def: "", usage: "bearer token of the server API under /api/ (not served when empty)"},
	{name: "pprof", def: "false", usage: "serve Go's profiler under /debug/pprof/ (keep it behind your firewall)"},
	{name: "log-level", def: "info", usage: "debug, info, warn or error"},
	{name: "log-format", def: "text", usage: "text or json"},
	// Webhooks (config_webhook.go).
	{name: "webhook-url", def: "", usage: "URL that receives user.online, user.offline and message.undelivered events (Standard Webhooks); empty: off"},
	{name: "webhook-secret", def: "", usage: "whsec_ followed by the base64 of the signing key; required with WEBHOOK_URL"},
	{name: "webhook-timeout", def: "5s", usage: "time the receiver has to answer one attempt"},
	{name: "webhook-retry-for", def: "10m", usage: "how long an event is retried, from its first attempt, before it is dropped"},
	{name: "webhook-queue-limit", def: "100000", usage: "events queued at most (cluster-wide with Redis); beyond it the oldest are dropped"},
	{name: "webhook-offline-delay", def: "5s", usage: "user.offline waits this long for the user to come back; a return within it emits nothing"},
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
	Pprof               bool
	LogLevel            string
	LogFormat           string
	Webhook             webhookConfig
}

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help requested")

// parseConfig reads flags from args, then the environment, then defaults.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("switchboard", flag.ContinueOnError)
	fs.SetOutput(out)
	vals := make(map[string]*string, len(options))
	for _, o := range options {
		vals[o.name] = fs.String(o.name, "", o.usage)
	}
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(out) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, errHelp
		}
		return config{}, err
	}
	if *version {
		return config{}, errVersion
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	get := func(name string) string {
		if v := *vals[name]; v != "" {
			return v
		}
		for _, o := range options {
			if o.name == name {
				if v := getenv(o.envName()); v != "" {
					return v
				}
				return o.def
			}
		}
		panic("unknown option " + name)
	}
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
		Pprof:               p.bool("pprof"),
		LogLevel:            get("log-level"),
		LogFormat:           get("log-format"),
	}
	c.Webhook = parseWebhook(&p)
	if p.err != nil {
		return config{}, p.err
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	if c.MaxMessageBytes < 512 {
		return config{}, errors.New("MAX_MESSAGE_BYTES must be at least 512")
	}
	if c.HeartbeatTTL < time.Second {
		return config{}, errors.New("HEARTBEAT_TTL must be at least 1s")
	}
	return c, nil
}

// parser converts option values, keeping the first error.
type parser struct {
	get func(string) string
	err error
}

func (p *parser) fail(name, v, want string) {
	if p.err == nil {
		p.err = fmt.Errorf("invalid %s=%q: want %s", strings.ToUpper(strings.ReplaceAll(name, "-", "_")), v, want)
	}
}

func (p *parser) int(name string) int {
	v := p.get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.fail(name, v, "a positive integer")
	}
	return n
}

func (p *parser) float(name string) float64 {
	v := p.get(name)
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		p.fail(name, v, "a positive number")
	}
	return f
}

func (p *parser) bool(name string) bool {
	v := p.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, v, "true or false")
	}
	return b
}

func (p *parser) duration(name string) time.Duration {
	v := p.get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(name, v, "a positive Go duration such as 30s or 2m")
	}
	return d
}

// durationOrZero is duration allowing 0 (JWT_LEEWAY=0: no leeway).
func (p *parser) durationOrZero(name string) time.Duration {
	v := p.get(name)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		p.fail(name, v, "a Go duration such as 30s, or 0")
	}
	return d
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
  switchboard webhook test [options]  send a signed test event to WEBHOOK_URL and show the answer
  switchboard --version

Options (a flag wins over its environment variable):
`, version)
	for _, o := range options {
		def := o.def
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%-22s %-22s default %s\n      %s\n", o.name, o.envName(), def, o.usage)
	}
}
