package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one run's report. Fields that do not apply to the scenario are
// left zero and omitted from JSON.
type Result struct {
	Scenario string `json:"scenario"`
	Label    string `json:"label,omitempty"`
	URL      string `json:"url"`
	URL2     string `json:"url2,omitempty"`
	Mode     string `json:"mode,omitempty"` // closed-loop / open-loop
	Conns    int    `json:"conns"`          // connections opened for the load (steady ones for churn)

	ConnectSeconds float64  `json:"connect_s,omitempty"`
	ConnectRate    float64  `json:"connect_per_s,omitempty"` // connect+online+ready per second
	ConnectLatency *Latency `json:"connect_latency,omitempty"`

	SettleSeconds float64  `json:"settle_s,omitempty"` // quiet wait before the load (join events)
	Seconds       float64  `json:"measured_s,omitempty"`
	TargetRate    float64  `json:"target_rate,omitempty"`
	Sent          int64    `json:"sent,omitempty"`
	Expected      int64    `json:"expected,omitempty"` // deliveries expected
	Received      int64    `json:"received,omitempty"`
	Lost          int64    `json:"lost,omitempty"`
	DeliveredPct  float64  `json:"delivered_pct,omitempty"`
	SendRate      float64  `json:"sent_per_s,omitempty"`
	Throughput    float64  `json:"delivered_per_s,omitempty"`
	Latency       *Latency `json:"latency,omitempty"`

	Churn *ChurnStats `json:"churn,omitempty"`

	ServerErrors map[string]int64 `json:"server_errors,omitempty"` // error frames by code
	ClientErrors map[string]int64 `json:"client_errors,omitempty"` // failed dials, writes, reads

	Server    *ServerStats `json:"server,omitempty"`
	ClientCPU float64      `json:"client_cpu_pct,omitempty"` // % of one core during the measured phase
	// MachineCPU is the whole machine's busy time in % of one core during
	// the measured phase; OtherCPU is the part used by neither the client
	// nor the server (-pid): other processes disturbing the run.
	MachineCPU float64 `json:"machine_cpu_pct,omitempty"`
	OtherCPU   float64 `json:"other_cpu_pct,omitempty"`
	IRQCPU     float64 `json:"irq_cpu_pct,omitempty"`
	LoadAvg    float64 `json:"loadavg_1m,omitempty"`
	// With -quiet-wait: how long the run waited for a quiet machine, and
	// the CPU other processes used (% of one core) when it started.
	QuietWaited time.Duration `json:"quiet_waited_ns,omitempty"`
	BusyBefore  float64       `json:"busy_before_pct,omitempty"`
	Checks      []Check       `json:"checks,omitempty"`
}

// ChurnStats are the churn scenario's figures.
type ChurnStats struct {
	TargetRate     float64 `json:"target_per_s"`
	Connects       int64   `json:"connects"`
	Disconnects    int64   `json:"disconnects"`
	ConnectRate    float64 `json:"connects_per_s"`
	DisconnectRate float64 `json:"disconnects_per_s"`
	Failed         int64   `json:"failed"`
}

// ServerStats come from /proc/PID and, when given, /metrics.
type ServerStats struct {
	RSSBeforeKB     int64   `json:"rss_before_kb"`
	RSSAfterKB      int64   `json:"rss_after_kb"`
	RSSPerConnKB    float64 `json:"rss_per_conn_kb,omitempty"`
	RSSEndKB        int64   `json:"rss_end_kb,omitempty"`     // after closing everything
	RSSSettledKB    int64   `json:"rss_settled_kb,omitempty"` // churn -settle: RSS once back near baseline, or at the deadline
	SettleSeconds   float64 `json:"settle_s,omitempty"`       // how long that took
	ThreadsBefore   int64   `json:"threads_before"`
	ThreadsAfter    int64   `json:"threads_after"`
	GoroutinesStart float64 `json:"goroutines_start,omitempty"`
	GoroutinesAfter float64 `json:"goroutines_after,omitempty"`
	CPUPct          float64 `json:"cpu_pct,omitempty"` // % of one core during the measured phase
}

// Check is a pass/fail verification made after the load (store bindings,
// connection gauge).
type Check struct {
	Name   string `json:"name"`
	Want   int64  `json:"want"`
	Got    int64  `json:"got"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Write prints r as JSON or as a two-column table.
func (r *Result) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	title := r.Scenario
	if r.Label != "" {
		title += " [" + r.Label + "]"
	}
	row("scenario", "%s", title)
	row("url", "%s", r.URL)
	if r.URL2 != "" {
		row("url2", "%s", r.URL2)
	}
	if r.Mode != "" {
		row("mode", "%s", r.Mode)
	}
	row("connections", "%d", r.Conns)
	if r.ConnectRate > 0 {
		row("connect+online+ready", "%.0f conns/s (%.2f s)", r.ConnectRate, r.ConnectSeconds)
	}
	if l := r.ConnectLatency; l != nil && l.Count > 0 {
		row("connect latency ms", "p50 %.2f  p99 %.2f  max %.2f", l.P50, l.P99, l.Max)
	}
	if r.SettleSeconds > 0 {
		row("settled", "%.2f s (waited for 300 ms without frames before sending)", r.SettleSeconds)
	}
	if r.Seconds > 0 {
		row("measured", "%.2f s", r.Seconds)
	}
	if r.TargetRate > 0 {
		row("target rate", "%.0f msgs/s", r.TargetRate)
	}
	if r.Sent > 0 || r.Received > 0 {
		row("sent", "%d (%.0f/s)", r.Sent, r.SendRate)
		if r.Expected > 0 {
			row("expected deliveries", "%d", r.Expected)
		}
		row("received", "%d (%.0f/s)", r.Received, r.Throughput)
		row("lost", "%d", r.Lost)
		row("delivered", "%.3f %%", r.DeliveredPct)
	}
	if l := r.Latency; l != nil && l.Count > 0 {
		row("latency ms", "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f",
			l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	}
	if c := r.Churn; c != nil {
		row("churn target", "%.0f conns/s", c.TargetRate)
		row("churn connects", "%d (%.1f/s)", c.Connects, c.ConnectRate)
		row("churn disconnects", "%d (%.1f/s)", c.Disconnects, c.DisconnectRate)
		row("churn failed", "%d", c.Failed)
	}
	row("server errors", "%s", fmtCounts(r.ServerErrors))
	row("client errors", "%s", fmtCounts(r.ClientErrors))
	if s := r.Server; s != nil {
		if s.RSSBeforeKB != 0 || s.RSSAfterKB != 0 {
			row("server RSS", "%d KB -> %d KB", s.RSSBeforeKB, s.RSSAfterKB)
			row("server threads", "%d -> %d", s.ThreadsBefore, s.ThreadsAfter)
		}
		if s.RSSPerConnKB != 0 {
			row("server RSS per conn", "%.1f KB", s.RSSPerConnKB)
		}
		if s.RSSSettledKB != 0 {
			row("server RSS settled", "%d KB after %.0f s", s.RSSSettledKB, s.SettleSeconds)
		}
		if s.RSSEndKB != 0 {
			row("server RSS at end", "%d KB", s.RSSEndKB)
		}
		if s.GoroutinesStart != 0 || s.GoroutinesAfter != 0 {
			row("server goroutines", "%.0f -> %.0f", s.GoroutinesStart, s.GoroutinesAfter)
		}
		if s.CPUPct != 0 {
			row("server CPU", "%.0f %% of a core", s.CPUPct)
		}
	}
	if r.ClientCPU != 0 {
		row("client CPU", "%.0f %% of a core", r.ClientCPU)
	}
	if r.QuietWaited != 0 {
		row("quiet wait", "%v (other processes at start: %.0f %% of a core)", r.QuietWaited.Round(time.Second), r.BusyBefore)
	}
	if r.MachineCPU != 0 {
		row("machine CPU", "%.0f %% of a core (interrupts %.0f %%, other processes %.0f %%, load average %.2f)",
			r.MachineCPU, r.IRQCPU, r.OtherCPU, r.LoadAvg)
	}
	for _, c := range r.Checks {
		status := "OK"
		if !c.OK {
			status = "FAIL"
		}
		row("check "+c.Name, "%s want %d got %d %s", status, c.Want, c.Got, c.Detail)
	}
	return tw.Flush()
}

func fmtCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}
