package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard/switchboard/routing/webhook"
)

// newWebhook builds the webhook sender: its queue in Redis when the store
// is, else in memory.
func (s *server) newWebhook(reg prometheus.Registerer) (*webhook.Sender, error) {
	wc := s.cfg.Webhook
	var q webhook.Queue = webhook.NewMemoryQueue(wc.QueueLimit)
	if s.redis != nil {
		rq, err := webhook.NewRedisQueue(s.redis, webhook.RedisQueueConfig{
			Node:     s.cfg.NodeID,
			Prefix:   s.cfg.RedisPrefix,
			Limit:    wc.QueueLimit,
			LeaseTTL: s.cfg.HeartbeatTTL, // a dead node's queue share is taken over when its bindings are reaped
		})
		if err != nil {
			return nil, err
		}
		q = rq
	}
	return webhook.New(webhook.Config{
		URL:          wc.URL,
		Key:          wc.Key,
		Queue:        q,
		Timeout:      wc.Timeout,
		RetryFor:     wc.RetryFor,
		OfflineDelay: wc.OfflineDelay,
		Registerer:   reg,
		Logger:       s.log,
	})
}

// runWebhookTest sends one signed webhook.test event to the configured
// WEBHOOK_URL and prints the request's headers and the answer. It fails
// unless the answer is 2xx.
func runWebhookTest(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	switch {
	case errors.Is(err, errHelp):
		return nil
	case err != nil:
		return err
	case cfg.Webhook.URL == "":
		return errors.New("webhook test: WEBHOOK_URL (or --webhook-url) is not set")
	}
	ev := webhook.TestEvent(cfg.NodeID, time.Now())
	ctx, cancel := context.WithTimeout(ctx, cfg.Webhook.Timeout)
	defer cancel()
	fmt.Fprintf(stdout, "POST %s\nwebhook-id: %s\n%s\n\n", cfg.Webhook.URL, ev.ID, ev.Body)
	var answer strings.Builder
	start := time.Now()
	status, err := webhook.Post(ctx, webhook.NewClient(), cfg.Webhook.URL, cfg.Webhook.Key, ev, &answer)
	if err != nil {
		return fmt.Errorf("webhook test: %w", err)
	}
	fmt.Fprintf(stdout, "answer: %d (%s)\n%s\n", status, time.Since(start).Round(time.Millisecond), answer.String())
	if status/100 != 2 {
		return fmt.Errorf("webhook test: the receiver answered %d; a 2xx acknowledges an event", status)
	}
	return nil
}
