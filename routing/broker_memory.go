package routing

import (
	"context"
	"sync"
)

var _ Broker = (*MemoryBroker)(nil)

// MemoryHub connects MemoryBrokers in one process, as Redis connects nodes.
// A single node needs only one broker on its own hub.
type MemoryHub struct {
	mu    sync.RWMutex
	nodes map[string]*MemoryBroker
}

// NewMemoryHub returns an empty hub.
func NewMemoryHub() *MemoryHub {
	return &MemoryHub{nodes: make(map[string]*MemoryBroker)}
}

// MemoryBroker is an in-process Broker: delivery to the other nodes of its
// hub is synchronous and always succeeds.
type MemoryBroker struct {
	hub  *MemoryHub
	node string

	mu      sync.Mutex
	deliver func(*Envelope) int
}

// Broker returns the broker of node on the hub, creating it.
func (h *MemoryHub) Broker(node string) *MemoryBroker {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := &MemoryBroker{hub: h, node: node}
	h.nodes[node] = b
	return b
}

// Publish implements Broker: every other node of the hub is offered e and
// counts what it delivered.
func (b *MemoryBroker) Publish(_ context.Context, e *Envelope) (Delivery, error) {
	var d Delivery
	b.hub.mu.RLock()
	if len(b.hub.nodes) == 1 {
		b.hub.mu.RUnlock()
		return d, nil
	}
	peers := make([]*MemoryBroker, 0, len(b.hub.nodes))
	for name, p := range b.hub.nodes {
		if name != b.node && (e.Node == "" || e.Node == name) {
			peers = append(peers, p)
		}
	}
	b.hub.mu.RUnlock()
	for _, p := range peers {
		p.mu.Lock()
		deliver := p.deliver
		p.mu.Unlock()
		if deliver != nil {
			d.Reached += deliver(e) // a node without the recipients delivers nothing
		}
	}
	return d, nil
}

// Subscribe implements Broker. Every node of the hub is offered every
// message, so there is nothing to record: an index entry per subscription
// would cost each idle connection ~160 bytes.
func (b *MemoryBroker) Subscribe(context.Context, Topic) error { return nil }

// Unsubscribe implements Broker.
func (b *MemoryBroker) Unsubscribe(Topic) {}

// Run implements Broker.
func (b *MemoryBroker) Run(ctx context.Context, deliver func(*Envelope) int) error {
	b.mu.Lock()
	b.deliver = deliver
	b.mu.Unlock()
	<-ctx.Done()
	b.mu.Lock()
	b.deliver = nil
	b.mu.Unlock()
	b.hub.mu.Lock()
	delete(b.hub.nodes, b.node)
	b.hub.mu.Unlock()
	return nil
}

// Healthy implements Broker.
func (b *MemoryBroker) Healthy() bool { return true }
