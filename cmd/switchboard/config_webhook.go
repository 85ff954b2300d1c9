package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/switchboard/switchboard/routing/webhook"
)

// webhookConfig is the WEBHOOK_* block of the configuration.
type webhookConfig struct {
	URL          string // empty: webhooks off
	Key          []byte // from WEBHOOK_SECRET
	Timeout      time.Duration
	RetryFor     time.Duration
	QueueLimit   int
	OfflineDelay time.Duration
}

// parseWebhook reads the WEBHOOK_* options. WEBHOOK_URL without a valid
// WEBHOOK_SECRET is an error naming it.
func parseWebhook(p *parser) webhookConfig {
	c := webhookConfig{
		URL:          p.get("webhook-url"),
		Timeout:      p.duration("webhook-timeout"),
		RetryFor:     p.duration("webhook-retry-for"),
		QueueLimit:   p.int("webhook-queue-limit"),
		OfflineDelay: p.duration("webhook-offline-delay"),
	}
	if c.URL == "" || p.err != nil {
		return c
	}
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.err = fmt.Errorf("invalid WEBHOOK_URL: want an http:// or https:// URL")
		return c
	}
	secret := p.get("webhook-secret")
	if secret == "" {
		p.err = fmt.Errorf("WEBHOOK_SECRET is required when WEBHOOK_URL is set: whsec_ followed by the base64 of a random key (for example: echo whsec_$(openssl rand -base64 32))")
		return c
	}
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		p.err = fmt.Errorf("invalid WEBHOOK_SECRET: %w", err)
		return c
	}
	c.Key = key
	return c
}

// webhookSecret checks a WEBHOOK_SECRET value.
func webhookSecret(v string) error {
	_, err := webhook.ParseSecret(v)
	return err
}
