// Command hookrecv is the webhook receiver of the benchmarks: it verifies
// every request's Standard Webhooks signature, answers 204, counts distinct
// events by type, and measures each event's latency from the moment that
// triggered it (its body's timestamp; for user.offline, that plus the
// offline delay) to its arrival. GET /stats returns the figures as JSON;
// DELETE /stats resets them.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard/switchboard/internal/bench"
)

type stats struct {
	mu       sync.Mutex
	requests int
	bad      int
	seen     map[string]bool
	byType   map[string]int
	hist     *bench.Histogram
}

func (s *stats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.bad = 0, 0
	s.seen, s.byType, s.hist = map[string]bool{}, map[string]int{}, bench.NewHistogram()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	secret := flag.String("secret", os.Getenv("WEBHOOK_SECRET"), "whsec_ secret (default $WEBHOOK_SECRET)")
	delay := flag.Duration("offline-delay", 5*time.Second, "the server's WEBHOOK_OFFLINE_DELAY, subtracted from user.offline latencies")
	flag.Parse()
	wh, err := standardwebhooks.NewWebhook(*secret)
	if err != nil {
		log.Fatal(err)
	}
	s := &stats{}
	s.reset()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var ev struct {
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
		}
		verr := wh.Verify(body, r.Header)
		jerr := json.Unmarshal(body, &ev)
		s.mu.Lock()
		s.requests++
		if verr != nil || jerr != nil {
			s.bad++
			s.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if id := r.Header.Get("webhook-id"); !s.seen[id] {
			s.seen[id] = true
			s.byType[ev.Type]++
			lat := now.Sub(ev.Timestamp)
			if ev.Type == "user.offline" {
				lat -= *delay
			}
			s.hist.Record(max(0, lat.Nanoseconds()))
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		out := map[string]any{
			"requests": s.requests, "bad": s.bad, "events": len(s.seen), "by_type": s.byType,
			"latency_ms": map[string]float64{
				"p50": float64(s.hist.Quantile(0.5)) / 1e6, "p99": float64(s.hist.Quantile(0.99)) / 1e6,
				"max": float64(s.hist.Max()) / 1e6,
			},
		}
		s.mu.Unlock()
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("DELETE /stats", func(w http.ResponseWriter, _ *http.Request) {
		s.reset()
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hookrecv listening on", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
