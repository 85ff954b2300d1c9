package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
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

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var errVersion = errors.New("version requested")

// run is the whole program: it parses args and the environment, then runs
// the server (or a subcommand) until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], getenv, stdout, stderr)
	}
	if len(args) > 1 && args[0] == "webhook" && args[1] == "test" {
		return runWebhookTest(ctx, args[2:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	switch {
	case errors.Is(err, errHelp):
		return nil
	case errors.Is(err, errVersion):
		fmt.Fprintln(stdout, "switchboard", version)
		return nil
	case err != nil:
		return err
	}
	log := newLogger(cfg, stderr)
	slog.SetDefault(log) // the process's logger, also for go-redis's messages
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
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
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
	broker   routing.Broker
	closers  []func() error        // run after the router has shut down, in order
	redis    redis.UniversalClient // nil in memory mode
	webhook  *webhook.Sender       // nil without WEBHOOK_URL
	verifier *auth.Verifier
	router   *routing.Router
	http     *http.Server
	ln       net.Listener
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
		Events:              events,
		Registerer:          reg,
		Logger:              log,
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/api/", s.router.API(cfg.AdminToken)) // 404 for everything without ADMIN_TOKEN
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux.Handle("/", web.Handler())
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// openStore picks the in-memory store or Redis.
func (s *server) openStore() error {
	if s.cfg.RedisURL == "" {
		s.store = session.NewMemoryStore()
		s.broker = routing.NewMemoryHub().Broker(s.cfg.NodeID)
		return nil
	}
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	client, err := session.NewRedisClient(s.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	s.store = session.NewRedisStore(client, session.RedisOptions{Prefix: s.cfg.RedisPrefix})
	s.broker = routing.NewRedisBroker(client, routing.RedisBrokerConfig{
		Node:   s.cfg.NodeID,
		Prefix: s.cfg.RedisPrefix,
		Logger: s.log,
	})
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
		fmt.Fprintf(w, "not ready: %v\n", err)
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
	s.ln = ln
	return nil
}

// Addr returns the bound address.
func (s *server) Addr() string { return s.ln.Addr().String() }

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
	serveErr := make(chan error, 1)
	// WebSocket handshakes skip net/http's per-connection buffers.
	go func() { serveErr <- s.http.Serve(s.router.Listener(s.ln)) }()
	s.log.Info("switchboard listening", "addr", s.Addr(), "node", s.cfg.NodeID, "store", s.storeName(),
		"auth", s.verifier.Enabled(), "version", version)

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

// redisLogger sends go-redis's own messages (dial retries during an outage,
// many per second) to the default logger at debug level: state changes are
// logged once by the store and the broker. go-redis's logger is global, so
// it is set once per process.
type redisLogger struct{}

var redisLoggerOnce sync.Once

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
