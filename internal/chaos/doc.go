// Package chaos holds Switchboard's fault tests: three nodes run as
// separate processes of the built binary against a private redis-server,
// with real WebSocket clients exchanging messages while Redis stalls, is
// paused, loses its pub/sub connections, restarts empty or is flushed, and
// while a node is killed or shut down. Each test asserts about messages
// (every one acked as delivered arrived exactly once, in order; nothing
// acked was lost), about presence (right again within twice the heartbeat
// TTL) and about leftovers (no binding, subscription or goroutine remains).
//
// The package has no code of its own; see its tests. `go test -short`
// trims the traffic of each fault.
package chaos
