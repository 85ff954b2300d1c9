// Package bench is sbbench's load generator for Switchboard's WebSocket
// protocol: scenarios idle, direct, broadcast and churn, each bounded in
// time and count, reporting a table or JSON.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxRunTime is the hard cap on a whole run, whatever the flags say.
const MaxRunTime = 10 * time.Minute

// Scenarios known to Run.
const (
	ScenarioIdle      = "idle"
	ScenarioDirect    = "direct"
	ScenarioBroadcast = "broadcast"
	ScenarioChurn     = "churn"
)

// Config is one run's parameters. ParseFlags fills the defaults.
type Config struct {
	URL      string // -url: where senders (and everyone, without -url2) connect
	URL2     string // -url2: second node; receivers connect there
	Scenario string

	Conns     int // idle: connections held; churn: steady connections
	Pairs     int // direct: user pairs a_i <-> b_i
	Subs      int // broadcast: subscribers
	Actions   int // actions the users are spread over (round robin)
	Window    int // direct closed-loop: messages in flight per sender
	Rate      float64
	Size      int
	Duration  time.Duration
	Warmup    time.Duration
	Drain     time.Duration
	Count     int64
	MaxTime   time.Duration
	ChurnRate float64
	ChurnLife time.Duration
	Abrupt    float64       // churn: fraction of churn connections dropped without a close frame
	Settle    time.Duration // churn: afterwards, wait up to this long for the server's RSS to return to its baseline

	DialConcurrency int
	DialTimeout     time.Duration
	Sources         []net.IP
	Origin          string
	Label           string // free text copied into the report (e.g. "barerelay")

	PID         int
	MetricsURL  string
	Redis       string
	RedisPrefix string

	QuietWait time.Duration // wait at most this long for a quiet machine before starting
	QuietMax  float64       // "quiet": other processes use less than this % of one core

	JSON       bool
	Progress   time.Duration
	CPUProfile string // -cpuprofile: the load tool's own CPU profile
}

// ParseFlags parses sbbench's command line into a validated Config.
func ParseFlags(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("sbbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the server (senders connect here)")
	fs.StringVar(&c.URL2, "url2", "", "optional second node: receivers (direct b_i, broadcast subscribers, every other churn/idle conn) connect here")
	fs.StringVar(&c.Scenario, "scenario", ScenarioDirect, "idle | direct | broadcast | churn")
	fs.IntVar(&c.Conns, "conns", 1000, "idle: connections to hold; churn: steady connections")
	fs.IntVar(&c.Pairs, "pairs", 100, "direct: number of user pairs (2 connections each)")
	fs.IntVar(&c.Subs, "subs", 1000, "broadcast: number of subscribers")
	fs.IntVar(&c.Actions, "actions", 1, "number of actions the users are spread over")
	fs.IntVar(&c.Window, "window", 16, "direct closed-loop: messages in flight per sender")
	fs.Float64Var(&c.Rate, "rate", 0, "direct: open-loop total msgs/s (0 = closed-loop max throughput); broadcast: publishes/s (default 50)")
	fs.IntVar(&c.Size, "size", 100, "message size in bytes (JSON as sent by the client)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase (idle: hold time; churn: churn time)")
	fs.DurationVar(&c.Warmup, "warmup", 1*time.Second, "load before the measured phase, not recorded")
	fs.DurationVar(&c.Drain, "drain", 3*time.Second, "after sending stops, wait at most this long for messages in flight")
	fs.Int64Var(&c.Count, "count", 0, "stop sending after this many measured messages (0 = no count bound)")
	fs.DurationVar(&c.MaxTime, "max-time", MaxRunTime, "hard cap on the whole run (at most 10m)")
	fs.Float64Var(&c.ChurnRate, "churn-rate", 200, "churn: new connections per second (each closes after -churn-life)")
	fs.DurationVar(&c.ChurnLife, "churn-life", time.Second, "churn: how long a churn connection lives after ready")
	fs.DurationVar(&c.Settle, "settle", 0, "churn with -pid: afterwards, hold the steady connections up to this long until the server's RSS is back within 10% of its baseline (Go returns freed memory after its next collection, at most 2 minutes apart when idle)")
	fs.Float64Var(&c.Abrupt, "abrupt", 0.5, "churn: fraction of churn connections dropped without a close frame")
	fs.IntVar(&c.DialConcurrency, "dial-concurrency", 64, "dials (connect+online+ready) in progress at once")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 10*time.Second, "timeout for one connect+online+ready")
	sources := fs.String("sources", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4", "local source addresses, comma-separated; a-b ranges of the last octet allowed (127.0.0.1-8)")
	fs.StringVar(&c.Origin, "origin", "", "Origin header to send (none by default)")
	fs.StringVar(&c.Label, "label", "", "label copied into the report")
	fs.IntVar(&c.PID, "pid", 0, "server pid: report RSS, threads and CPU from /proc")
	fs.StringVar(&c.MetricsURL, "metrics", "", "server /metrics URL: read switchboard_connections and go_goroutines (churn/idle checks)")
	fs.StringVar(&c.Redis, "redis", "", "churn: Redis address or URL to check bindings afterwards")
	fs.StringVar(&c.RedisPrefix, "prefix", "sb:", "churn: Redis key prefix")
	fs.BoolVar(&c.JSON, "json", false, "print the result as JSON")
	fs.DurationVar(&c.Progress, "progress", 2*time.Second, "interval of progress lines on stderr (0 = none)")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write sbbench's own CPU profile to this file")
	fs.DurationVar(&c.QuietWait, "quiet-wait", 0, "before starting, wait up to this long for the machine to be quiet (0 = don't wait)")
	fs.Float64Var(&c.QuietMax, "quiet-max", 30, "with -quiet-wait: quiet means other processes use under this % of one core (1 s samples)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	rateSet := false
	fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	if c.Scenario == ScenarioBroadcast && !rateSet {
		c.Rate = 50
	}
	ips, err := ParseSources(*sources)
	if err != nil {
		return Config{}, err
	}
	c.Sources = ips
	return c, c.Validate()
}

// ParseSources parses "127.0.0.1,127.0.0.2" or "127.0.0.1-4" into addresses.
func ParseSources(s string) ([]net.IP, error) {
	var ips []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		ip := net.ParseIP(lo).To4()
		if ip == nil {
			return nil, fmt.Errorf("-sources: %q is not an IPv4 address", lo)
		}
		if !isRange {
			ips = append(ips, ip)
			continue
		}
		end, err := strconv.Atoi(hi)
		if err != nil || end < int(ip[3]) || end > 255 {
			return nil, fmt.Errorf("-sources: bad range %q", part)
		}
		for o := int(ip[3]); o <= end; o++ {
			ips = append(ips, net.IPv4(ip[0], ip[1], ip[2], byte(o)).To4())
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("-sources: no address")
	}
	return ips, nil
}

// minSize is the smallest -size: the fixed part of a direct message.
const minSize = 64

// Validate checks the config and returns the first problem found.
func (c Config) Validate() error {
	for _, u := range []string{c.URL, c.URL2} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			return fmt.Errorf("bad WebSocket URL %q (want ws://host:port/path)", u)
		}
	}
	if c.URL == "" {
		return errors.New("-url is required")
	}
	switch c.Scenario {
	case ScenarioIdle, ScenarioChurn:
		if c.Conns < 0 || (c.Scenario == ScenarioIdle && c.Conns == 0) {
			return fmt.Errorf("-conns must be positive, got %d", c.Conns)
		}
	case ScenarioDirect:
		if c.Pairs <= 0 {
			return fmt.Errorf("-pairs must be positive, got %d", c.Pairs)
		}
		if c.Rate == 0 && c.Window <= 0 {
			return fmt.Errorf("-window must be positive for closed-loop runs, got %d", c.Window)
		}
	case ScenarioBroadcast:
		if c.Subs <= 0 {
			return fmt.Errorf("-subs must be positive, got %d", c.Subs)
		}
		if c.Rate <= 0 {
			return fmt.Errorf("broadcast needs -rate > 0, got %v", c.Rate)
		}
	default:
		return fmt.Errorf("unknown -scenario %q (want idle, direct, broadcast or churn)", c.Scenario)
	}
	if c.Rate < 0 {
		return fmt.Errorf("-rate must not be negative, got %v", c.Rate)
	}
	if c.Actions <= 0 {
		return fmt.Errorf("-actions must be positive, got %d", c.Actions)
	}
	if c.Size < minSize || c.Size > 1<<20 {
		return fmt.Errorf("-size must be in [%d, 1048576], got %d", minSize, c.Size)
	}
	if c.Duration <= 0 && c.Count <= 0 {
		return errors.New("set -duration or -count: every run needs a bound")
	}
	if c.Duration < 0 || c.Warmup < 0 || c.Drain < 0 || c.Count < 0 {
		return errors.New("-duration, -warmup, -drain and -count must not be negative")
	}
	if c.MaxTime <= 0 || c.MaxTime > MaxRunTime {
		return fmt.Errorf("-max-time must be in (0, %v], got %v", MaxRunTime, c.MaxTime)
	}
	if c.Settle < 0 {
		return fmt.Errorf("-settle must not be negative, got %v", c.Settle)
	}
	if c.Warmup+c.Duration+c.Settle >= c.MaxTime {
		return fmt.Errorf("-warmup + -duration + -settle (%v) must be below -max-time (%v)", c.Warmup+c.Duration+c.Settle, c.MaxTime)
	}
	if c.Scenario == ScenarioChurn {
		if c.ChurnRate <= 0 {
			return fmt.Errorf("-churn-rate must be positive, got %v", c.ChurnRate)
		}
		if c.ChurnLife <= 0 {
			return fmt.Errorf("-churn-life must be positive, got %v", c.ChurnLife)
		}
		if c.Abrupt < 0 || c.Abrupt > 1 {
			return fmt.Errorf("-abrupt must be in [0,1], got %v", c.Abrupt)
		}
	}
	if c.DialConcurrency <= 0 {
		return fmt.Errorf("-dial-concurrency must be positive, got %d", c.DialConcurrency)
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("-dial-timeout must be positive, got %v", c.DialTimeout)
	}
	if len(c.Sources) == 0 {
		return errors.New("-sources: no address")
	}
	if c.QuietWait < 0 || c.QuietWait >= c.MaxTime {
		return fmt.Errorf("-quiet-wait must be in [0, -max-time), got %v", c.QuietWait)
	}
	if c.PID < 0 {
		return fmt.Errorf("-pid must not be negative, got %d", c.PID)
	}
	return nil
}
