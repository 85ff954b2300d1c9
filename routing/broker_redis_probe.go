package routing

// The liveness probe of RedisBroker: the node publishes a probe on its own
// channel every ProbeInterval. Redis answers how many subscribers took it:
// none means the node's subscription is gone. The probe coming back through
// the subscription shows that it still delivers; one that stops coming
// back has the subscription rebuilt.

import (
	"context"
	"time"
)

func (b *RedisBroker) probeLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.ProbeInterval)
	defer t.Stop()
	node := b.channel(Topic{Node: b.cfg.Node})
	probe, _ := (&Envelope{Kind: KindProbe, Origin: b.cfg.Node, Node: b.cfg.Node}).MarshalBinary()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		n, err := b.publishNode(pctx, b.store.Client(), b.cfg.Node, probe).Result()
		cancel()
		if err == nil {
			b.setFailing(false) // Redis answers publishes again
		}
		since := time.Since(time.Unix(0, b.lastProbe.Load()))
		silent := since > 3*b.cfg.ProbeInterval+b.cfg.Timeout
		ok := err == nil && n > 0 && !silent
		if ok != b.probeOK.Load() {
			b.probeOK.Store(ok)
			if ok {
				b.log.Info("redis pub/sub delivering again")
			} else {
				b.log.Error("redis pub/sub does not deliver; cross-node messages fail with unavailable until it recovers")
			}
		}
		if silent && since > 5*b.cfg.ProbeInterval+2*b.cfg.Timeout {
			b.lastProbe.Store(time.Now().UnixNano()) // give the new one time
			select {
			case b.subs.rebuild <- node:
			default:
			}
		}
	}
}
