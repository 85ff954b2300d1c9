package session

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client timeouts set by NewRedisClient unless the URL sets them. They keep
// every Redis call well under a WebSocket pong wait (30-60 s), so a hung or
// unreachable Redis turns into ErrUnavailable within seconds.
const (
	redisDialTimeout  = 2 * time.Second
	redisReadTimeout  = time.Second // also the write timeout
	redisPoolTimeout  = 2 * time.Second
	redisDialAttempts = 2 // go-redis's default (5) multiplies the dial timeout
)

// NewRedisClient returns a go-redis client for rawURL (REDIS_URL). It does
// no I/O: a wrong host shows on the first call, not here.
//
// Accepted forms:
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	    one Redis server (go-redis's ParseURL; port defaults to 6379)
//	rediss://...
//	    the same over TLS
//	unix:///path/to/redis.sock[?db=N]
//	    one Redis server on a Unix socket
//	redis://host1:7000,redis://host2:7001,host3:7002
//	    a Redis Cluster named by several seeds, comma separated; scheme,
//	    credentials and options come from the first URL, the others give
//	    host:port only (a bare host:port is accepted)
//	redis://[[user]:password@]host1:7000?addr=host2:7001&addr=host3:7002
//	    a Redis Cluster in go-redis's ParseClusterURL form
//	redis://host:7000?cluster=true
//	    a Redis Cluster known by a single seed (e.g. a configuration endpoint)
//
// Options are go-redis's URL options (dial_timeout, read_timeout,
// pool_size, ...). Unless the URL sets them, the client uses a dial timeout
// of 2 s (two attempts per dial), read and write timeouts of 1 s and a pool
// timeout of 2 s; it always honours context deadlines
// (ContextTimeoutEnabled), and it never resends a command on its own
// (max_retries -1 unless the URL sets it): a resent publish could deliver a
// message twice. A cluster has no databases: a /db other than 0 is
// an error there. Over TLS a cluster verifies every node against the first
// seed's host name, as ParseClusterURL does.
func NewRedisClient(rawURL string) (redis.UniversalClient, error) {
	parts := strings.Split(rawURL, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	first, err := parseURL(parts[0])
	if err != nil {
		return nil, err
	}
	q := first.Query()
	cluster := len(parts) > 1 || q.Has("addr")
	if q.Has("cluster") {
		switch v := q.Get("cluster"); v {
		case "true", "1", "yes":
			cluster = true
		case "false", "0", "no":
			if cluster {
				return nil, fmt.Errorf("session: REDIS_URL: cluster=%s with several seeds", v)
			}
		default:
			return nil, fmt.Errorf("session: REDIS_URL: cluster=%q: want true or false", v)
		}
		q.Del("cluster")
		first.RawQuery = q.Encode()
	}

	if !cluster {
		opt, err := redis.ParseURL(first.String())
		if err != nil {
			return nil, fmt.Errorf("session: REDIS_URL: %w", err)
		}
		limits{&opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout,
			&opt.PoolTimeout, &opt.DialerRetries, &opt.MaxRetries}.apply()
		return redis.NewClient(opt), nil
	}

	if p := strings.Trim(first.Path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("session: REDIS_URL: a Redis Cluster has no database %q", p)
	}
	first.Path = ""
	opt, err := redis.ParseClusterURL(first.String())
	if err != nil {
		return nil, fmt.Errorf("session: REDIS_URL: %w", err)
	}
	for _, p := range parts[1:] {
		addr, err := seedAddr(p, first)
		if err != nil {
			return nil, err
		}
		opt.Addrs = append(opt.Addrs, addr)
	}
	limits{&opt.ContextTimeoutEnabled, &opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout,
		&opt.PoolTimeout, &opt.DialerRetries, &opt.MaxRetries}.apply()
	return redis.NewClusterClient(opt), nil
}

// limits points at the timeout fields that redis.Options and
// redis.ClusterOptions share.
type limits struct {
	ctxTimeout                *bool
	dial, read, write, poolTO *time.Duration
	dialAttempts              *int
	maxRetries                *int
}

// apply honours context deadlines and fills the timeouts the URL left unset.
func (l limits) apply() {
	*l.ctxTimeout = true
	*l.dial = orDefault(*l.dial, redisDialTimeout)
	*l.read = orDefault(*l.read, redisReadTimeout)
	*l.write = orDefault(*l.write, *l.read)
	*l.poolTO = orDefault(*l.poolTO, redisPoolTimeout)
	if *l.dialAttempts == 0 {
		*l.dialAttempts = redisDialAttempts
	}
	// go-redis resends a command (a pipeline whole) after a timeout or a
	// lost connection, although Redis may have run it: a publish would then
	// go out twice. Switchboard decides itself what to retry.
	if *l.maxRetries == 0 {
		*l.maxRetries = -1
	}
}

// seedAddr returns the host:port of one further cluster seed: a URL with
// the same scheme as the first and nothing but a host and port, or a bare
// host:port.
func seedAddr(s string, first *url.URL) (string, error) {
	if !strings.Contains(s, "://") {
		if h, p, err := net.SplitHostPort(s); err == nil && h != "" && p != "" {
			return s, nil
		}
		return "", fmt.Errorf("session: REDIS_URL: seed %q: want redis://host:port or host:port", s)
	}
	u, err := parseURL(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != first.Scheme {
		return "", fmt.Errorf("session: REDIS_URL: seed %q: scheme %q differs from the first seed's %q", u.Redacted(), u.Scheme, first.Scheme)
	}
	if u.User != nil && u.User.String() != first.User.String() {
		return "", fmt.Errorf("session: REDIS_URL: seed %q: credentials differ from the first seed's", u.Redacted())
	}
	if u.Host == "" || u.RawQuery != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("session: REDIS_URL: seed %q: only the first URL may carry a database or options", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// parseURL is url.Parse with errors that do not repeat the URL, which may
// hold a password.
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("session: REDIS_URL: %w", err)
	}
	return u, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// IsCluster reports whether c talks to a Redis Cluster (or another sharded
// deployment, a Ring), where one Lua script or transaction cannot span keys
// in different hash slots.
func IsCluster(c redis.UniversalClient) bool {
	switch c.(type) {
	case *redis.ClusterClient, *redis.Ring:
		return true
	}
	return false
}
