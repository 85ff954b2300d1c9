package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard/switchboard/auth"
	"github.com/switchboard/switchboard/routing"
	"github.com/switchboard/switchboard/routing/webhook"
	"github.com/switchboard/switchboard/session"
	"github.com/switchboard/switchboard/web"
)

var errVersion = errors.New("version requested")

// run is the whole program: it parses args and the environment, then runs
// the server (or a subcommand) until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, stdout)
	}
	if len(args) > 1 && args[0] == "webhook" && args[1] == "test" {
		return runWebhookTest(ctx, args[2:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stdout)
	switch {
	case errors.Is(err, errHelp):
		return nil
	case errors.Is(err, errVersion):
		fmt.Fprintln(stdout, "switchboard", buildVersion())
		return nil
	case err != nil:
		for _, w := range unknownVariables(os.Environ()) {
			err = fmt.Errorf("%w\n%s", err, w) // a typo may be why
		}
		return err
	}
	log := newLogger(cfg, stderr)
	for _, w := range unknownVariables(os.Environ()) {
		log.Warn(w)
	}
	s, err := newServer(cfg, log)
	if err != nil {
		return err
	}
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Run(ctx)
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // checked by parseConfig
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// server is one Switchboard node: HTTP server, router, store and broker.
type server struct {
	cfg      config
	log      *slog.Logger
	store    session.Store
	mailbox  session.Mailbox // nil with MAILBOX=false
	broker   routing.Broker
	closers  []func() error        // run after the router has shut down, in order
	redis    redis.UniversalClient // nil in memory mode
	webhook  *webhook.Sender       // nil without WEBHOOK_URL
	verifier *auth.Verifier
	router   *routing.Router
	http     *http.Server
	ln       net.Listener
	certs    *certReloader // nil without TLS
	metrics  *http.Server  // nil without METRICS_ADDR
	metricLn net.Listener
}

// newServer wires a node from cfg. It does no network I/O.
func newServer(cfg config, log *slog.Logger) (*server, error) {
	s := &server{cfg: cfg, log: log}
	leeway := cfg.JWTLeeway
	if leeway == 0 {
		leeway = auth.NoLeeway
	}
	var err error
	s.verifier, err = auth.New(auth.Config{
		Secret:        cfg.JWTSecret,
		PublicKeyFile: cfg.JWTPublicKey,
		JWKSURL:       cfg.JWKSURL,
		OIDCIssuer:    cfg.OIDCIssuer,
		Issuer:        cfg.JWTIssuer,
		Audience:      cfg.JWTAudience,
		UserClaim:     cfg.JWTUserClaim,
		Leeway:        leeway,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	if err := s.openStore(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var events routing.Events // stays a nil interface without webhooks
	if cfg.Webhook.URL != "" {
		if s.webhook, err = s.newWebhook(reg); err != nil {
			return nil, err
		}
		events = s.webhook
	}
	s.router, err = routing.New(routing.Config{
		Node:                cfg.NodeID,
		Store:               s.store,
		Broker:              s.broker,
		Verifier:            s.verifier,
		AuthOptional:        !cfg.AuthRequired,
		TokenLeeway:         s.verifier.Leeway(),
		AllowedOrigins:      cfg.AllowedOrigins,
		MaxMessageBytes:     cfg.MaxMessageBytes,
		OnlineTimeout:       cfg.OnlineTimeout,
		RateLimit:           cfg.RateLimit,
		RateBurst:           cfg.RateBurst,
		NoPresenceEvents:    !cfg.PresenceEvents,
		PresenceEventsLimit: cfg.PresenceEventsLimit,
		HeartbeatTTL:        cfg.HeartbeatTTL,
		OutboundQueue:       cfg.OutboundQueue,
		OutboundBufferBytes: cfg.OutboundBufferBytes,
		Mailbox:             s.mailbox,
		OutboundStall:       cfg.OutboundStall,
		OutboundMaxBytes:    cfg.OutboundMaxBytes,
		Limits: routing.Limits{
			MaxConnections: cfg.MaxConnections,
			HandshakeRate:  cfg.HandshakeRate,
			HandshakeBurst: cfg.HandshakeBurst,
			TrustedProxies: cfg.TrustedProxies,
		},
		Events:     events,
		Registerer: reg,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", s.router)
	mux.Handle("/ws/", s.router)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("/api/", s.router.API(cfg.AdminToken)) // 404 for everything without ADMIN_TOKEN
	opsMux := mux
	if cfg.MetricsAddr != "" {
		opsMux = http.NewServeMux()
		s.metrics = s.newHTTPServer(opsMux)
	}
	opsMux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		opsMux.HandleFunc("/debug/pprof/", pprof.Index)
		opsMux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	if cfg.DemoPage {
		mux.Handle("/", web.Handler())
	}
	s.http = s.newHTTPServer(mux)
	if cfg.TLSCert != "" {
		if s.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// httpReadHeaderTimeout bounds reading a plain HTTP request's headers (the
// listener's bound on a connection's first request is the same).
const httpReadHeaderTimeout = 10 * time.Second

// newHTTPServer returns an http.Server for h with Switchboard's timeouts for
// plain HTTP requests (API, health, metrics, page): HTTP_READ_TIMEOUT for a
// whole request, body included (an API body is at most MAX_MESSAGE_BYTES,
// so a body trickled in slower is cut off instead of holding a file
// descriptor), and HTTP_IDLE_TIMEOUT between requests. A WebSocket is past
// them once upgraded: the router sets its own deadlines.
func (s *server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(httpReadHeaderTimeout, s.cfg.HTTPReadTimeout),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// openStore picks the in-memory store or Redis.
func (s *server) openStore() error {
	mopts := session.MailboxOptions{Size: s.cfg.MailboxSize, TTL: s.cfg.MailboxTTL, DedupWindow: s.cfg.DedupWindow}
	if s.cfg.RedisURL == "" {
		store := session.NewMemoryStore()
		store.SetMaxUserConnections(s.cfg.MaxConnsPerUser)
		s.store = store
		s.broker = routing.NewMemoryHub().Broker(s.cfg.NodeID)
		if s.cfg.Mailbox {
			s.mailbox = session.NewMemoryMailbox(mopts, s.cfg.MailboxMemoryLimit)
		}
		return nil
	}
	client, err := session.NewRedisClient(s.cfg.RedisURL)
	if err != nil {
		return err // parseConfig has checked the URL: this does not happen
	}
	store := session.NewRedisStore(client, session.RedisOptions{Prefix: s.cfg.RedisPrefix, MaxUserConnections: s.cfg.MaxConnsPerUser})
	s.store = store
	var mailbox *session.RedisMailbox
	if s.cfg.Mailbox {
		mailbox = session.NewRedisMailbox(client, s.cfg.RedisPrefix, mopts)
		s.mailbox = mailbox
	}
	s.broker, err = routing.NewRedisBroker(store, routing.RedisBrokerConfig{
		Node:    s.cfg.NodeID,
		Mailbox: mailbox,
		Logger:  s.log,
	})
	if err != nil {
		_ = client.Close()
		return err
	}
	s.closers = append(s.closers, client.Close)
	s.redis = client
	return nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.router.Ready(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "not ready: "+s.notReadyReason(err)+"\n")
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// Listen binds the address, so that errors surface before serving and tests
// can use port 0.
func (s *server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if s.metrics != nil {
		if s.metricLn, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on METRICS_ADDR: %w", err)
		}
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address.
func (s *server) Addr() string { return s.ln.Addr().String() }

// URL returns the address to open in a browser: the bound address with a
// scheme, and localhost for a wildcard host.
func (s *server) URL() string {
	scheme := "http"
	if s.certs != nil {
		scheme = "https"
	}
	return scheme + "://" + browsable(s.ln.Addr()) + "/"
}

// browsable is addr with localhost for an unspecified (wildcard) host.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// close every WebSocket with 1001, remove bindings, stop the broker, close
// the store, all within SHUTDOWN_TIMEOUT.
func (s *server) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	s.router.Prepare(ctx)
	done := make(chan struct{}, 3)
	go func() { s.logErr("router", s.router.Run(bg)); done <- struct{}{} }()
	go func() {
		if s.webhook != nil { // stops after the router's last user.offline events (bg ends after Shutdown)
			s.logErr("webhooks", s.webhook.Run(bg))
		}
		done <- struct{}{}
	}()
	go func() {
		if s.verifier.Enabled() {
			s.logErr("auth", s.verifier.Run(bg))
		}
		done <- struct{}{}
	}()
	serveErr := make(chan error, 2)
	ln := s.ln
	if s.certs != nil {
		// TLS first: the handshake listener below reads the decrypted
		// request, so wss:// keeps its per-connection saving.
		ln = tls.NewListener(ln, s.certs.tlsConfig())
	}
	// WebSocket handshakes skip net/http's per-connection buffers.
	go func() { serveErr <- s.http.Serve(s.router.Listener(ln)) }()
	if s.metrics != nil {
		go func() { serveErr <- s.metrics.Serve(s.metricLn) }()
		s.log.Info("metrics listening", "url", "http://"+browsable(s.metricLn.Addr())+"/metrics")
	}
	s.log.Info("switchboard listening", "addr", s.Addr(), "url", s.URL(), "node", s.cfg.NodeID, "store", s.storeName(),
		"auth", s.verifier.Enabled(), "tls", s.certs != nil, "version", buildVersion())

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve: %w", err)
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	herr := s.http.Shutdown(sctx) // stops accepting; WebSockets are hijacked and closed next
	if s.metrics != nil {
		herr = errors.Join(herr, s.metrics.Shutdown(sctx))
	}
	rerr := s.router.Shutdown(sctx)
	stopBG()
	<-done
	<-done
	<-done
	var cerr error
	for _, c := range s.closers {
		cerr = errors.Join(cerr, c())
	}
	cerr = errors.Join(cerr, s.store.Close())
	if e := errors.Join(herr, rerr, cerr); e != nil {
		s.log.Warn("shutdown incomplete", "err", e)
	} else {
		s.log.Info("shut down cleanly")
	}
	return err
}

func (s *server) logErr(what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error(what+" stopped", "err", err)
	}
}

func (s *server) storeName() string {
	if s.cfg.RedisURL == "" {
		return "memory"
	}
	return "redis"
}

// notReadyReason is what /readyz says of err: the failing component and the
// setting to look at, never an address or an internal error (the log has
// those).
func (s *server) notReadyReason(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "store"):
		return "store (REDIS_URL) unreachable"
	case strings.HasPrefix(msg, "broker"):
		return "cannot route to other nodes (REDIS_URL pub/sub)"
	case strings.HasPrefix(msg, "auth"):
		src := "JWKS_URL"
		if s.cfg.JWKSURL == "" {
			src = "OIDC_ISSUER"
		}
		return "signing keys not loaded yet from " + src + " (the log says why)"
	}
	return msg
}
