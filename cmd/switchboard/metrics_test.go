package main

import (
	"bufio"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricsScrape is one scrape of /metrics: series (name plus labels, as
// printed) → value.
type metricsScrape struct {
	raw    string
	series map[string]float64
}

// scrapeMetrics reads n's /metrics.
func scrapeMetrics(t testing.TB, n *testNode) metricsScrape {
	t.Helper()
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	s := metricsScrape{raw: string(b), series: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(s.raw))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: bad line %q", line)
		}
		s.series[line[:i]] = v
	}
	return s
}

// get returns a series' value; a missing series fails the test.
func (s metricsScrape) get(t testing.TB, series string) float64 {
	t.Helper()
	v, ok := s.series[series]
	if !ok {
		t.Fatalf("/metrics has no series %s", series)
	}
	return v
}

// metricsWatch checks how series move between scrapes.
type metricsWatch struct {
	t    testing.TB
	n    *testNode
	base metricsScrape
}

func watchMetrics(t testing.TB, n *testNode) *metricsWatch {
	return &metricsWatch{t: t, n: n, base: scrapeMetrics(t, n)}
}

// expect waits until every series has moved by its delta since the last
// expect (counters are updated after messages go out, so poll).
func (w *metricsWatch) expect(deltas map[string]float64) {
	w.t.Helper()
	var cur metricsScrape
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur = scrapeMetrics(w.t, w.n)
		bad := ""
		for series, d := range deltas {
			if got := cur.get(w.t, series) - w.base.series[series]; got != d {
				bad += "\n  " + series + ": moved by " + strconv.FormatFloat(got, 'g', -1, 64) + ", want " + strconv.FormatFloat(d, 'g', -1, 64)
			}
		}
		if bad == "" {
			break
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("metrics did not move as expected:%s", bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.base = cur
}

// gauge waits until a gauge has the value want.
func (w *metricsWatch) gauge(series string, want float64) {
	w.t.Helper()
	waitFor(w.t, 5*time.Second, series+" = "+strconv.FormatFloat(want, 'g', -1, 64), func() bool {
		return scrapeMetrics(w.t, w.n).get(w.t, series) == want
	})
}

func TestMetrics(t *testing.T) {
	n := startNode(t, "--admin-token", testAdminToken, "--online-timeout", "300ms", "--mailbox=false")
	w := watchMetrics(t, n)

	// Every series the spec and operations docs name is there from the start.
	for _, series := range []string{
		"switchboard_connections", "switchboard_users",
		"switchboard_messages_received_total",
		`switchboard_messages_delivered_total{kind="broadcast"}`,
		`switchboard_messages_delivered_total{kind="direct"}`,
		`switchboard_messages_delivered_total{kind="api"}`,
		`switchboard_errors_total{code="user_offline"}`,
		`switchboard_errors_total{code="rate_limited"}`,
		`switchboard_disconnects_total{reason="slow_consumer"}`,
		`switchboard_disconnects_total{reason="client"}`,
		"switchboard_store_up", "switchboard_store_errors_total",
		"switchboard_broker_up", "switchboard_publish_failures_total",
		"switchboard_routing_latency_seconds_count",
	} {
		w.base.get(t, series)
	}
	w.gauge("switchboard_store_up", 1)

	// Distinctive names, to check that none shows in a label.
	const action, userA, userB = "room-q7xk", "user-a-q7xk", "user-b-q7xk"
	a, aID := onlineConn(t, n, action, userA)
	b, bID := onlineConn(t, n, action, userB)
	w.gauge("switchboard_connections", 2)
	w.gauge("switchboard_users", 2)

	a.send(map[string]any{"text": "one"})
	a.send(map[string]any{"text": "two", "id": 1})
	b.expect("message")
	b.expect("message")
	a.expect("ack")
	w.expect(map[string]float64{
		"switchboard_messages_received_total":                    2,
		`switchboard_messages_delivered_total{kind="broadcast"}`: 2,
		`switchboard_messages_delivered_total{kind="direct"}`:    0,
		"switchboard_routing_latency_seconds_count":              2, // every routed message // only messages whose outcome is awaited
		`switchboard_errors_total{code="user_offline"}`:          0,
		`switchboard_disconnects_total{reason="client"}`:         0,
		`switchboard_messages_delivered_total{kind="api"}`:       0,
	})

	a.send(map[string]any{"text": "private", "to": userB})
	b.expect("message")
	a.send(map[string]any{"text": "nobody there", "to": "ghost", "id": 2})
	a.expectError("user_offline")
	a.sendRaw("not json")
	a.expectError("invalid_json")
	a.send(map[string]any{"type": "ack"})
	a.expectError("reserved_type")
	w.expect(map[string]float64{
		"switchboard_messages_received_total":                    4,
		`switchboard_messages_delivered_total{kind="direct"}`:    1,
		`switchboard_messages_delivered_total{kind="broadcast"}`: 0,
		`switchboard_errors_total{code="user_offline"}`:          1,
		`switchboard_errors_total{code="invalid_json"}`:          1,
		`switchboard_errors_total{code="reserved_type"}`:         1,
	})

	// Server API: deliveries of kind api, requests by call and status.
	mustCall(t, n, "POST", "/api/publish", `{"action":"`+action+`","text":"from the backend"}`)
	a.expect("message")
	b.expect("message")
	apiRequest(t, n, "GET", "/api/actions/"+action, "wrong", "")
	w.expect(map[string]float64{
		`switchboard_messages_delivered_total{kind="api"}`:                 2,
		`switchboard_messages_delivered_total{kind="broadcast"}`:           0,
		"switchboard_messages_received_total":                              0,
		`switchboard_api_requests_total{call="publish",status="200"}`:      1,
		`switchboard_api_requests_total{call="unauthorized",status="401"}`: 1,
	})

	// Disconnects by reason.
	mustCall(t, n, "DELETE", "/api/connections/"+bID, "")
	expectDisconnected(b, "disconnected by the server")
	w.gauge("switchboard_connections", 1)
	w.gauge("switchboard_users", 1)
	silent := n.dial(t, "/ws", nil) // never goes online
	silent.expectError("online_timeout")
	silent.expectClose(1008)
	a.ws.Close()
	w.gauge("switchboard_connections", 0)
	w.gauge("switchboard_users", 0)
	w.expect(map[string]float64{
		`switchboard_disconnects_total{reason="api"}`:     1,
		`switchboard_disconnects_total{reason="timeout"}`: 1,
		`switchboard_disconnects_total{reason="client"}`:  1,
		`switchboard_errors_total{code="online_timeout"}`: 1,
	})

	// Bounded cardinality: no user, connection or action anywhere, and
	// only the known label names on switchboard_ series.
	final := scrapeMetrics(t, n)
	for _, s := range []string{action, userA, userB, "ghost", aID, bID} {
		if strings.Contains(final.raw, s) {
			t.Errorf("/metrics mentions %q", s)
		}
	}
	labelName := regexp.MustCompile(`([a-z_]+)="`)
	allowed := map[string]bool{"kind": true, "code": true, "reason": true, "call": true, "status": true, "le": true}
	for series := range final.series {
		if !strings.HasPrefix(series, "switchboard_") {
			continue
		}
		for _, m := range labelName.FindAllStringSubmatch(series, -1) {
			if !allowed[m[1]] {
				t.Errorf("series %s has label %q", series, m[1])
			}
		}
	}
}
