package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histSubBits sets the histogram's precision: each power-of-two range is
// split into 2^histSubBits linear buckets, so a recorded value is off by at
// most 1/128 (under 0.8%) of itself.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = (63-histSubBits)*histSub + 2*histSub
)

// Histogram is a log-linear (HDR-like) histogram of non-negative int64
// values, nanoseconds in practice. Record is lock-free and safe for
// concurrent use; it costs two atomic adds and, rarely, a CAS for the max.
// The zero value is not usable: call NewHistogram.
type Histogram struct {
	counts []atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Int64
	min    atomic.Int64
}

// NewHistogram returns an empty histogram (about 58 KB).
func NewHistogram() *Histogram {
	h := &Histogram{counts: make([]atomic.Uint64, histBuckets)}
	h.min.Store(math.MaxInt64)
	return h
}

func histIndex(v int64) int {
	if v < 2*histSub {
		return int(v)
	}
	k := bits.Len64(uint64(v)) - 1 // v in [2^k, 2^(k+1))
	s := k - histSubBits
	return s*histSub + int(v>>s)
}

// histUpper returns the largest value that maps to bucket i.
func histUpper(i int) int64 {
	if i < 2*histSub {
		return int64(i)
	}
	s := i/histSub - 1
	m := int64(i - s*histSub)
	return (m+1)<<s - 1
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[histIndex(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if v >= m || h.min.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest recorded value (0 when empty).
func (h *Histogram) Max() int64 { return h.max.Load() }

// Min returns the smallest recorded value (0 when empty).
func (h *Histogram) Min() int64 {
	if h.total.Load() == 0 {
		return 0
	}
	return h.min.Load()
}

// Mean returns the exact mean of the recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return float64(h.sum.Load()) / float64(n)
}

// Quantile returns the value at quantile q in [0,1]: the upper bound of the
// bucket holding the ceil(q*n)-th smallest value, clamped to [Min, Max].
// Call it when recording has stopped.
func (h *Histogram) Quantile(q float64) int64 {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	if q >= 1 {
		return h.Max()
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			v := histUpper(i)
			if mx := h.Max(); v > mx {
				v = mx
			}
			if mn := h.Min(); v < mn {
				v = mn
			}
			return v
		}
	}
	return h.Max()
}

// Latency is a summary of a latency histogram in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / float64(time.Millisecond) }

// Summary returns the histogram's percentiles, values taken as nanoseconds.
func (h *Histogram) Summary() Latency {
	return Latency{
		Count: h.Count(),
		Mean:  h.Mean() / float64(time.Millisecond),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}
