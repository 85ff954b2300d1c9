package routing

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// docsURL is where the wire protocol is documented.
const docsURL = "https://github.com/switchboard/switchboard/blob/main/docs/protocol.md"

// outageStoreTimeout bounds the store operations of an online while the
// store is known to be unreachable.
const outageStoreTimeout = time.Second

// logLimiter lets one log line through per interval: a misbehaving client
// or a wrong setting repeats on every connection.
type logLimiter struct{ next atomic.Int64 }

// allow reports whether a line may be logged now, and if so, starts a new
// interval of length every.
func (l *logLimiter) allow(every time.Duration) bool {
	now := time.Now().UnixNano()
	next := l.next.Load()
	return now >= next && l.next.CompareAndSwap(next, now+int64(every))
}

// refuseNotRunning refuses an online because Run was never called: without
// it nothing delivers from other nodes, writes the heartbeat or notices a
// store outage, and with Redis the node would silently route nowhere.
func (r *Router) refuseNotRunning(c *Conn) {
	if r.runLog.allow(10 * time.Second) {
		r.log.Error("routing: online refused: Router.Run has not been called; call go router.Run(ctx) after routing.New and before serving")
	}
	c.closeWithError(CodeInternal, websocket.ClosePolicyViolation)
}

// notWebSocket answers a plain HTTP request (a browser opening the URL) to
// a WebSocket path.
func notWebSocket(w http.ResponseWriter) {
	w.Header().Set("Upgrade", "websocket")
	http.Error(w, "This is Switchboard's WebSocket endpoint: connect with a WebSocket client "+
		"(ws:// or wss://, e.g. new WebSocket(url) in a browser). The protocol: "+docsURL, http.StatusBadRequest)
}

// refuseOrigin answers a WebSocket handshake whose Origin is not allowed,
// saying what to set, and logs it at most every 10 s.
func (r *Router) refuseOrigin(w http.ResponseWriter, req *http.Request) {
	origin := req.Header.Get("Origin")
	allowed := make([]string, 0, len(r.origins))
	for o := range r.origins {
		allowed = append(allowed, o)
	}
	if r.originLog.allow(10 * time.Second) {
		r.log.Warn("WebSocket refused: Origin not allowed (set ALLOWED_ORIGINS)",
			"origin", origin, "host", req.Host, "allowed_origins", strings.Join(allowed, ","))
	}
	hint := origin
	if u, err := url.Parse(origin); err == nil && u.Scheme != "" && u.Host != "" {
		hint = u.Scheme + "://" + u.Host
	}
	http.Error(w, "Origin "+origin+" is not allowed to open WebSockets here. "+
		"Allow it with ALLOWED_ORIGINS="+hint+" (comma-separated, or * for any); "+
		"the server's own host is always allowed.", http.StatusForbidden)
}
