package routing

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one node's Prometheus collectors. No label ever holds a user,
// a connection or an action: label values come from fixed sets.
type metrics struct {
	connections   prometheus.Gauge
	users         prometheus.Gauge
	received      prometheus.Counter
	delivered     map[string]prometheus.Counter // broadcast, direct, api
	errors        *prometheus.CounterVec
	errorByCode   map[string]prometheus.Counter
	disconnects   *prometheus.CounterVec
	storeErrors   prometheus.Counter
	storeUp       prometheus.Gauge
	brokerUp      prometheus.Gauge
	routeLatency  prometheus.Histogram
	publishFailed prometheus.Counter
	// pendingUnbinds counts bindings whose removal failed and is retried.
	pendingUnbinds prometheus.Gauge
	apiRequests    *prometheus.CounterVec // by call and HTTP status
	evictions      prometheus.Counter
	refusals       *prometheus.CounterVec // upgrades refused at the door, by reason

	// The mailbox's (registered only when it is on).
	mailKept       prometheus.Counter
	mailDuplicates prometheus.Counter
	catchups       prometheus.Counter
	catchupSize    prometheus.Histogram
	repairs        prometheus.Counter
}

// Delivery kinds for switchboard_messages_delivered_total.
const (
	deliveryBroadcast = "broadcast"
	deliveryDirect    = "direct"
	deliveryAPI       = "api"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_connections", Help: "Live WebSocket connections on this node.",
		}),
		users: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_users", Help: "Distinct online users on this node.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_messages_received_total", Help: "Messages received from clients after online.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_errors_total", Help: "Error messages sent to clients, by code.",
		}, []string{"code"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_disconnects_total", Help: "Closed connections, by reason.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_store_errors_total", Help: "Failed operations on the shared store (Redis or memory).",
		}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_store_up", Help: "1 when the shared store answered the last check.",
		}),
		brokerUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_broker_up", Help: "1 when messages can be routed to other nodes.",
		}),
		routeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_routing_latency_seconds",
			Help:    "Time from receiving a message to knowing its cluster-wide delivery count.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		publishFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_publish_failures_total", Help: "Messages that could not be routed to other nodes.",
		}),
		pendingUnbinds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_pending_unbinds", Help: "Bindings of closed connections whose removal from the store failed and is being retried.",
		}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_api_requests_total", Help: "Server API requests, by call and HTTP status.",
		}, []string{"call", "status"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_slow_consumers_total",
			Help: "Connections closed as slow consumers, counted when found (the disconnect follows when the close frame is written).",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_refusals_total", Help: "Connections refused, by reason: at the door, before the WebSocket handshake (max_connections, handshake_rate, bad_request), or at online (too_many_connections, banned).",
		}, []string{"reason"}),
	}
	for _, reason := range refusalReasons {
		m.refusals.WithLabelValues(reason)
	}
	m.mailKept = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_mailbox_kept_total", Help: "Direct messages kept in a mailbox by this node.",
	})
	m.mailDuplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_mailbox_duplicates_total", Help: "Direct messages not kept nor delivered again: their id was seen within DEDUP_WINDOW.",
	})
	m.catchups = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_mailbox_catchups_total", Help: "Catch-ups served: connections that replayed their mailbox after online.",
	})
	m.repairs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_mailbox_repairs_total",
		Help: "Subscriptions to a user's messages lost and restored: their connections replayed the mailbox from the last message each was handed.",
	})
	m.catchupSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_mailbox_catchup_messages",
		Help:    "Messages replayed per catch-up.",
		Buckets: []float64{0, 1, 10, 100, 1000, 10000},
	})
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_messages_delivered_total", Help: "Messages handed to local connections, by kind.",
	}, []string{"kind"})
	m.delivered = map[string]prometheus.Counter{}
	for _, k := range []string{deliveryBroadcast, deliveryDirect, deliveryAPI} {
		m.delivered[k] = delivered.WithLabelValues(k)
	}
	m.errorByCode = map[string]prometheus.Counter{}
	for code := range errorMessages {
		m.errorByCode[code] = m.errors.WithLabelValues(code)
	}
	for _, reason := range disconnectReasons {
		m.disconnects.WithLabelValues(reason)
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.users, m.received, delivered, m.errors,
			m.disconnects, m.storeErrors, m.storeUp, m.brokerUp, m.routeLatency, m.publishFailed, m.pendingUnbinds, m.apiRequests,
			m.evictions, m.refusals)
	}
	return m
}

// registerMailbox registers the mailbox's metrics; dropped is read from
// the mailbox itself.
func (m *metrics) registerMailbox(reg prometheus.Registerer, mbox interface{ Dropped() uint64 }) {
	if reg == nil {
		return
	}
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "switchboard_mailbox_dropped_total",
		Help: "Kept direct messages removed for retention (MAILBOX_SIZE, MAILBOX_TTL, the memory limit) by this node.",
	}, func() float64 { return float64(mbox.Dropped()) })
	reg.MustRegister(m.mailKept, m.mailDuplicates, m.catchups, m.catchupSize, m.repairs, dropped)
}

// historyStats is a broker that replays histories (RedisBroker).
type historyStats interface {
	HistoryStats() (replayed, failed uint64)
}

// registerHistory registers the metrics of history replays, read from h.
func registerHistory(reg prometheus.Registerer, h historyStats) {
	if reg == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_history_replayed_total",
			Help: "Messages replayed from a target's history after a broken Redis subscription: Redis had dropped them with it.",
		}, func() float64 { r, _ := h.HistoryStats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_history_failures_total",
			Help: "History replays after a broken Redis subscription that could not read the history: what Redis dropped with it is lost.",
		}, func() float64 { _, f := h.HistoryStats(); return float64(f) }),
	)
}

// refusalReasons are the values of switchboard_refusals_total's reason label.
var refusalReasons = []string{refuseMaxConnections, refuseHandshakeRate, refuseBadRequest, refuseTooManyConnections, refuseBanned}

// disconnectReasons are the values of the reason label.
var disconnectReasons = []string{
	"client", "slow_consumer", "policy", "timeout", "shutdown", "api", "message_too_big", "invalid_utf8", "unavailable",
	"too_many_connections", "banned",
}

// errorSent counts an error frame; codes outside the protocol's set (from custom
// handlers) are counted as "custom".
func (m *metrics) errorSent(code string) {
	if c, ok := m.errorByCode[code]; ok {
		c.Inc()
		return
	}
	m.errors.WithLabelValues("custom").Inc()
}

// apiRequest counts a server API request. call comes from a fixed set (see
// Router.API) and status is an HTTP status code: bounded labels.
func (m *metrics) apiRequest(call string, status int) {
	m.apiRequests.WithLabelValues(call, strconv.Itoa(status)).Inc()
}
