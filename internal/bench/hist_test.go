package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
)

func TestHistIndexMonotonicAndBounded(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := histIndex(v)
		if i < prev {
			t.Fatalf("histIndex(%d) = %d, below previous %d", v, i, prev)
		}
		if i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, want < %d", v, i, histBuckets)
		}
		if up := histUpper(i); up < v {
			t.Fatalf("histUpper(histIndex(%d)) = %d, want >= value", v, up)
		}
		if i > 0 && histUpper(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d (upper %d)", v, i-1, histUpper(i-1))
		}
		prev = i
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
	}{
		{"uniform 1..10000", seq(1, 10000)},
		{"single", []int64{4242}},
		{"small exact", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"random ns", randomValues(50000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistogram()
			for _, v := range tt.values {
				h.Record(v)
			}
			sorted := append([]int64(nil), tt.values...)
			sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
				rank := int(math.Ceil(q*float64(len(sorted)))) - 1
				want := sorted[rank]
				got := h.Quantile(q)
				if got < want || float64(got-want) > float64(want)/histSub+1 {
					t.Errorf("Quantile(%v) = %d, want %d (within 1/%d)", q, got, want, histSub)
				}
			}
			if got, want := h.Max(), sorted[len(sorted)-1]; got != want {
				t.Errorf("Max() = %d, want %d", got, want)
			}
			if got, want := h.Count(), uint64(len(sorted)); got != want {
				t.Errorf("Count() = %d, want %d", got, want)
			}
		})
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	h := NewHistogram()
	if got := h.Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile = %d, want 0", got)
	}
	h.Record(-5)
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("Quantile after Record(-5) = %d, want 0", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := NewHistogram()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); i <= 1000; i++ {
				h.Record(i * 1000)
			}
		}()
	}
	wg.Wait()
	if got, want := h.Count(), uint64(8000); got != want {
		t.Fatalf("Count() = %d, want %d", got, want)
	}
	if got, want := h.Max(), int64(1000000); got != want {
		t.Fatalf("Max() = %d, want %d", got, want)
	}
	if got, want := h.Mean(), 500500.0; got != want {
		t.Fatalf("Mean() = %v, want %v", got, want)
	}
}

func seq(from, to int64) []int64 {
	var s []int64
	for v := from; v <= to; v++ {
		s = append(s, v)
	}
	return s
}

func randomValues(n int) []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(r.ExpFloat64() * 2e6)
	}
	return s
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	for i := 0; b.Loop(); i++ {
		h.Record(int64(i) * 997)
	}
}
