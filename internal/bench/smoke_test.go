package bench

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/internal/bench/relay"
)

// startRelay serves a bare relay on 127.0.0.1:0 for the test.
func startRelay(t *testing.T) (wsURL, metricsURL string) {
	t.Helper()
	srv := httptest.NewServer(relay.New())
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", srv.URL + "/metrics"
}

func runScenario(t *testing.T, args ...string) *Result {
	t.Helper()
	cfg, err := ParseFlags(append(args, "-progress", "0", "-drain", "2s"), io.Discard)
	if err != nil {
		t.Fatalf("ParseFlags(%q): %v", args, err)
	}
	var out strings.Builder
	res, err := Run(context.Background(), cfg, &out, io.Discard)
	if err != nil {
		t.Fatalf("Run(%q): %v\n%s", args, err, out.String())
	}
	if len(res.ClientErrors) > 0 || len(res.ServerErrors) > 0 {
		t.Errorf("errors: client %v, server %v", res.ClientErrors, res.ServerErrors)
	}
	return res
}

func checkDelivered(t *testing.T, res *Result) {
	t.Helper()
	if res.Sent == 0 {
		t.Fatal("nothing was sent")
	}
	if res.Received != res.Expected || res.Lost != 0 {
		t.Errorf("received %d of %d (lost %d)", res.Received, res.Expected, res.Lost)
	}
	if res.Latency == nil || res.Latency.Count != uint64(res.Received) {
		t.Errorf("latency samples = %+v, want %d", res.Latency, res.Received)
	}
}

func TestSmokeDirectClosedLoop(t *testing.T) {
	u, _ := startRelay(t)
	res := runScenario(t, "-url", u, "-scenario", "direct", "-pairs", "4", "-warmup", "100ms", "-duration", "300ms")
	checkDelivered(t, res)
	if res.Throughput <= 0 {
		t.Errorf("throughput = %v, want > 0", res.Throughput)
	}
}

func TestSmokeDirectOpenLoopTwoURLs(t *testing.T) {
	u, _ := startRelay(t)
	// Both URLs name the same relay: the -url2 code path without a cluster.
	res := runScenario(t, "-url", u, "-url2", u, "-scenario", "direct", "-pairs", "5", "-rate", "1000", "-warmup", "50ms", "-duration", "300ms")
	checkDelivered(t, res)
	if res.Sent < 200 || res.Sent > 310 {
		t.Errorf("sent %d at 1000/s for 300 ms, want about 300", res.Sent)
	}
}

func TestSmokeDirectCountBound(t *testing.T) {
	u, _ := startRelay(t)
	res := runScenario(t, "-url", u, "-scenario", "direct", "-pairs", "2", "-warmup", "0", "-duration", "0", "-count", "500")
	checkDelivered(t, res)
	if res.Sent != 500 {
		t.Errorf("sent = %d, want 500", res.Sent)
	}
}

func TestSmokeBroadcast(t *testing.T) {
	u, _ := startRelay(t)
	res := runScenario(t, "-url", u, "-scenario", "broadcast", "-subs", "20", "-rate", "100", "-warmup", "50ms", "-duration", "300ms")
	checkDelivered(t, res)
	if res.Expected != res.Sent*20 {
		t.Errorf("expected = %d, want sent*20 = %d", res.Expected, res.Sent*20)
	}
}

func TestSmokeIdle(t *testing.T) {
	u, m := startRelay(t)
	res := runScenario(t, "-url", u, "-metrics", m, "-scenario", "idle", "-conns", "50", "-duration", "100ms")
	if res.ConnectRate <= 0 {
		t.Errorf("connect rate = %v, want > 0", res.ConnectRate)
	}
	checkChecks(t, res, 2)
}

func TestSmokeChurn(t *testing.T) {
	u, m := startRelay(t)
	res := runScenario(t, "-url", u, "-metrics", m, "-scenario", "churn", "-conns", "10",
		"-churn-rate", "100", "-churn-life", "100ms", "-duration", "500ms")
	if res.Churn == nil || res.Churn.Connects < 40 || res.Churn.Connects != res.Churn.Disconnects {
		t.Errorf("churn = %+v, want ~50 connects, all disconnected", res.Churn)
	}
	checkChecks(t, res, 2)
}

func checkChecks(t *testing.T, res *Result, want int) {
	t.Helper()
	if len(res.Checks) != want {
		t.Fatalf("checks = %+v, want %d", res.Checks, want)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check %s failed: want %d got %d", c.Name, c.Want, c.Got)
		}
	}
}
