package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// procSample is what /proc tells about the server process.
type procSample struct {
	RSSKB   int64
	Threads int64
	CPU     time.Duration // user + system
}

func readProc(pid int) (procSample, error) {
	var s procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSKB, _ = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			s.Threads, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the parenthesised command name start at field 3 (state);
	// utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	return s, nil
}

// machineCPU returns the whole machine's CPU time from /proc/stat, all
// cores: busy (everything but idle and iowait) and irq (hard and soft
// interrupts, which on loopback are mostly the benchmark's own packets and
// are charged to no process). ok is false when unreadable.
func machineCPU() (busy, irq time.Duration, ok bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, false
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	var b, q int64
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch i {
		case 3, 4:
		case 5, 6:
			q += n
			b += n
		default:
			b += n
		}
	}
	tick := time.Second / clockTicks
	return time.Duration(b) * tick, time.Duration(q) * tick, true
}

// loadAvg returns the 1-minute load average (0 when unreadable).
func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// selfCPU returns this process's user + system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readMetrics fetches a Prometheus text page and returns the sum over all
// label sets of each requested metric; absent metrics are absent from the map.
func readMetrics(ctx context.Context, url string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if j := strings.IndexByte(line, '{'); j >= 0 && j < len(name) {
			name = line[:j]
			if k := strings.LastIndexByte(line, '}'); k >= 0 {
				rest = strings.TrimSpace(line[k+1:])
			}
		} else if !ok {
			continue
		}
		if !want[name] {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out, sc.Err()
}

// storeCounter counts a Switchboard Redis store's bindings.
type storeCounter struct {
	rdb    *redis.Client
	prefix string
}

func newStoreCounter(addr, prefix string) (*storeCounter, error) {
	var opt *redis.Options
	if strings.Contains(addr, "://") {
		o, err := redis.ParseURL(addr)
		if err != nil {
			return nil, fmt.Errorf("-redis: %w", err)
		}
		opt = o
	} else {
		opt = &redis.Options{Addr: addr}
	}
	return &storeCounter{rdb: redis.NewClient(opt), prefix: prefix}, nil
}

// count returns the number of {prefix}conn:* keys (SCAN, never KEYS) whose
// user_id ends in suffix (all of them when suffix is empty), and the total
// number of fields of the given actions' hashes.
func (s *storeCounter) count(ctx context.Context, suffix string, actions []string) (conns, actionFields int64, err error) {
	var cursor uint64
	for {
		keys, next, err := s.rdb.Scan(ctx, cursor, s.prefix+"conn:*", 1000).Result()
		if err != nil {
			return 0, 0, err
		}
		if suffix == "" {
			conns += int64(len(keys))
		} else if len(keys) > 0 {
			pipe := s.rdb.Pipeline()
			cmds := make([]*redis.StringCmd, len(keys))
			for i, k := range keys {
				cmds[i] = pipe.HGet(ctx, k, "user_id")
			}
			_, _ = pipe.Exec(ctx) // a key gone meanwhile is redis.Nil: not counted
			for _, c := range cmds {
				if u, err := c.Result(); err == nil && strings.HasSuffix(u, suffix) {
					conns++
				}
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	for _, a := range actions {
		n, err := s.rdb.HLen(ctx, s.prefix+"action:"+a).Result()
		if err != nil {
			return 0, 0, err
		}
		actionFields += n
	}
	return conns, actionFields, nil
}

func (s *storeCounter) Close() error { return s.rdb.Close() }
