package webhook

import "github.com/prometheus/client_golang/prometheus"

// Reasons of switchboard_webhook_events_dropped_total.
const (
	dropExpired     = "retry_expired" // not acknowledged within RetryFor
	dropQueueFull   = "queue_full"    // the oldest beyond QueueLimit
	dropBufferFull  = "buffer_full"   // the node's hand-over buffer to the queue was full
	dropUnavailable = "unavailable"   // the queue's store could not be reached at shutdown
)

type metrics struct {
	emitted   *prometheus.CounterVec
	delivered prometheus.Counter
	retried   prometheus.Counter
	dropped   *prometheus.CounterVec
	debounced prometheus.Counter
	queueLen  prometheus.Gauge
	oldest    prometheus.Gauge
	latency   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_webhook_events_total", Help: "Webhook events queued by this node, by type.",
		}, []string{"type"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_webhook_delivered_total", Help: "Webhook events acknowledged (2xx) by the receiver, sent by this node.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_webhook_retries_total", Help: "Webhook attempts that failed and were scheduled again.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_webhook_dropped_total", Help: "Webhook events given up, by reason.",
		}, []string{"reason"}),
		debounced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_webhook_debounced_total", Help: "user.offline events cancelled (with their user.online) because the user came back within the delay.",
		}),
		queueLen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_webhook_queue_length", Help: "Webhook events queued and not acknowledged yet (cluster-wide with Redis).",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_webhook_oldest_event_age_seconds", Help: "Age of the oldest queued webhook event (0 when none).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchboard_webhook_delivery_seconds", Help: "Time from an event (its timestamp) to its acknowledgement; for user.offline it includes the offline delay.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
	}
	for _, t := range []string{TypeUserOnline, TypeUserOffline, TypeUndelivered} {
		m.emitted.WithLabelValues(t)
	}
	for _, r := range []string{dropExpired, dropQueueFull, dropBufferFull, dropUnavailable} {
		m.dropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.emitted, m.delivered, m.retried, m.dropped, m.debounced, m.queueLen, m.oldest, m.latency)
	}
	return m
}
