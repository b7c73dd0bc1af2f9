package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// latencyRelativeError is the documented bound of a quantile's relative
// error: one bucket of schema 3.
var latencyRelativeError = math.Exp2(1.0/8) - 1

// Every duration lands in the bucket whose bounds hold it, bounds
// included as Prometheus defines them (lower exclusive, upper inclusive).
func TestADurationLandsInTheBucketThatHoldsIt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(secs float64) {
		t.Helper()
		i := latencyIndex(secs)
		if i < 0 {
			if secs > latencyZeroThreshold {
				t.Fatalf("%gs in the zero bucket (threshold %g)", secs, latencyZeroThreshold)
			}
			return
		}
		upper := LatencyBucketUpper(i)
		lower := 0.0
		if i > 0 {
			lower = LatencyBucketUpper(i - 1)
		}
		if i == LatencyBuckets-1 {
			upper = math.Inf(1) // the top bucket takes what is longer
		}
		if !(lower < secs && secs <= upper) {
			t.Fatalf("%gs in bucket %d (%g, %g]", secs, i, lower, upper)
		}
	}
	for range 100_000 {
		check(math.Exp2(rng.Float64()*40 - 24)) // 2^-24 s to 2^16 s
	}
	for k := latencyMinExp * 8; k <= latencyMaxExp*8; k++ { // every bound itself
		check(math.Exp2(float64(k) / 8))
	}
	check(0)
}

// A quantile of the distribution is within one bucket (9.05%) of the
// exact quantile of the durations recorded.
func TestQuantilesAreWithinOneBucketOfTheExactOnes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, spread := range []struct {
		name   string
		sample func() time.Duration
	}{
		{"log-uniform 100µs to 10s", func() time.Duration {
			return time.Duration(math.Exp2(rng.Float64()*16.6-13.3) * float64(time.Second))
		}},
		{"normal around 5ms", func() time.Duration {
			return time.Duration(max(5e6+rng.NormFloat64()*1e6, 1e3))
		}},
		{"two modes, 1ms and 200ms", func() time.Duration {
			if rng.IntN(100) < 97 {
				return time.Millisecond + time.Duration(rng.IntN(100_000))
			}
			return 200*time.Millisecond + time.Duration(rng.IntN(10_000_000))
		}},
	} {
		t.Run(spread.name, func(t *testing.T) {
			d := newDistribution(0)
			var exact []time.Duration
			for range 20_000 {
				v := spread.sample()
				d.observe(v, nil)
				exact = append(exact, v)
			}
			slices.Sort(exact)
			var l Latency
			d.read(&l)
			if l.Count != uint64(len(exact)) {
				t.Fatalf("count %d, want %d", l.Count, len(exact))
			}
			for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999} {
				want := exact[int(math.Ceil(q*float64(len(exact))))-1]
				got := l.Quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > latencyRelativeError {
					t.Errorf("p%g: %v, exact %v: %.1f%% off, bound %.2f%%", q*100, got, want, rel*100, latencyRelativeError*100)
				}
			}
		})
	}
}

// A window of a distribution, the later copy less the earlier one, holds
// only the durations in between.
func TestALatencyWindowHoldsWhatHappenedInIt(t *testing.T) {
	d := newDistribution(0)
	for range 1000 {
		d.observe(time.Second, nil)
	}
	var before, after Latency
	d.read(&before)
	for range 100 {
		d.observe(time.Millisecond, nil)
	}
	d.read(&after)
	after.Sub(&before)
	if after.Count != 100 || after.Sum != 100*time.Millisecond {
		t.Fatalf("window: %d calls, %v in all; want 100, 100ms", after.Count, after.Sum)
	}
	if p99 := after.Quantile(0.99); math.Abs(p99.Seconds()-1e-3) > 1e-3*latencyRelativeError {
		t.Fatalf("window p99 %v, want about 1ms", p99)
	}
}

// The per-procedure histograms are what client_golang's own native
// histogram of the same schema makes of the same durations: the same
// buckets, count and sum, and the classic buckets what its classic
// histogram makes.
func TestLatencyHistogramsAreThoseOfClientGolang(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var durations []time.Duration
	for range 5000 {
		durations = append(durations, time.Duration(math.Exp2(rng.Float64()*12-14)*float64(time.Second)))
	}
	durations = append(durations, 0, 500*time.Nanosecond, 5*time.Millisecond) // zero bucket, and a bound

	for _, mode := range []LatencyExposition{LatencyNative, LatencyClassic, LatencyBoth} {
		t.Run(mode.String(), func(t *testing.T) {
			reg, family := newLatencyFamily(t, mode)
			reference := prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:                         "reference",
				NativeHistogramBucketFactor:  math.Exp2(1.0 / 8),
				NativeHistogramZeroThreshold: LatencyZeroThreshold(),
				Buckets:                      DefaultBuckets(),
			})
			clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
			tracker, err := NewTracker(TrackerOpts{DefaultTimeout: time.Hour, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			s := tracker.Open(family)
			for i, d := range durations {
				s.Call(uint64(i), "hello", 0)
				clock.Advance(d)
				s.Result(uint64(i))
				reference.Observe(d.Seconds())
			}
			got := testkit.FindMetric(t, reg, "wamp_router_responses_latency_seconds", "message", "hello").GetHistogram()
			var m dto.Metric
			if err := reference.Write(&m); err != nil {
				t.Fatal(err)
			}
			want := m.GetHistogram()

			if got.GetSampleCount() != uint64(len(durations)) || math.Abs(got.GetSampleSum()-want.GetSampleSum()) > 1e-9 {
				t.Errorf("count %d, sum %g; want %d, %g", got.GetSampleCount(), got.GetSampleSum(), len(durations), want.GetSampleSum())
			}
			if mode.native() {
				if got.GetSchema() != want.GetSchema() || got.GetZeroThreshold() != want.GetZeroThreshold() || got.GetZeroCount() != want.GetZeroCount() {
					t.Errorf("schema %d, zero bucket %g × %d; want %d, %g × %d", got.GetSchema(), got.GetZeroThreshold(), got.GetZeroCount(),
						want.GetSchema(), want.GetZeroThreshold(), want.GetZeroCount())
				}
				if g, w := nativeBuckets(got), nativeBuckets(want); !mapsEqual(g, w) {
					t.Errorf("native buckets\n got %v\nwant %v", g, w)
				}
			} else if len(got.GetPositiveSpan()) != 0 || got.GetSchema() != 0 {
				t.Errorf("classic only, but native buckets: %v", got)
			}
			if mode.classic() {
				if len(got.GetBucket()) != len(want.GetBucket()) {
					t.Fatalf("%d classic buckets, want %d", len(got.GetBucket()), len(want.GetBucket()))
				}
				for i, b := range want.GetBucket() {
					if g := got.GetBucket()[i]; g.GetUpperBound() != b.GetUpperBound() || g.GetCumulativeCount() != b.GetCumulativeCount() {
						t.Errorf("classic bucket le=%g: %d, want %d", b.GetUpperBound(), g.GetCumulativeCount(), b.GetCumulativeCount())
					}
				}
			} else if len(got.GetBucket()) != 0 {
				t.Errorf("native only, but %d classic buckets", len(got.GetBucket()))
			}
		})
	}
}

// A procedure's histograms exist, empty, from its first use, like its
// summaries; with LatencyOff there are none.
func TestLatencyHistogramsExistFromTheFirstUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	family, err := NewFamily(reg, FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10})
	if err != nil {
		t.Fatal(err)
	}
	family.Declare("hello", 0)
	for o := Outcome(0); o < numOutcomes; o++ {
		h := testkit.FindMetric(t, reg, "wamp_router_"+o.String()+"_latency_seconds", "message", "hello").GetHistogram()
		if h == nil || h.GetSampleCount() != 0 || len(h.GetPositiveSpan()) != 1 || h.GetZeroThreshold() == 0 {
			t.Errorf("%v: %v, want an empty native histogram", o, h)
		}
	}

	off := prometheus.NewRegistry()
	family, err = NewFamily(off, FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10, Latency: LatencyOff})
	if err != nil {
		t.Fatal(err)
	}
	family.Declare("hello", 0)
	if m := testkit.FindMetric(t, off, "wamp_router_responses_latency_seconds", "message", "hello"); m != nil {
		t.Errorf("latency histograms off, but %v", m)
	}
}

// nativeBuckets decodes a native histogram's positive spans and deltas
// into counts by bucket key, leaving out empty buckets.
func nativeBuckets(h *dto.Histogram) map[int]int64 {
	out := map[int]int64{}
	key, count, d := 0, int64(0), 0
	for i, span := range h.GetPositiveSpan() {
		if i == 0 {
			key = int(span.GetOffset())
		} else {
			key += int(span.GetOffset())
		}
		for range span.GetLength() {
			count += h.GetPositiveDelta()[d]
			d++
			if count != 0 {
				out[key] = count
			}
			key++
		}
	}
	return out
}

func mapsEqual(a, b map[int]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// While calls go on ending, every scrape's histogram is consistent: its
// count is its zero bucket plus its native buckets, as Prometheus demands
// of a native histogram (it rejects the sample otherwise), and no classic
// bucket holds more than the count. It used to take the classic +Inf
// count when that was read larger.
func TestLatencyHistogramsStayConsistentUnderLoad(t *testing.T) {
	for _, mode := range []LatencyExposition{LatencyNative, LatencyClassic, LatencyBoth} {
		t.Run(mode.String(), func(t *testing.T) {
			_, family := newLatencyFamily(t, mode)
			s := family.lookup("hello", 0)
			done := make(chan struct{})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-done:
							return
						default:
						}
						s.pending.Add(1)
						family.record(s, Response, time.Duration(1+(i*7+g)%5000)*time.Microsecond, 0, nil)
					}
				})
			}
			defer func() { close(done); wg.Wait() }()
			// Only this collector: the summaries' and the _total_seconds
			// histogram's Write wait for observations in progress, which
			// under this load takes most of a second.
			c := newLatencyCollector(family, "wamp_router", "wamp router", mode, nil)
			for range 300 {
				h := collectResponses(t, c)
				if mode.native() {
					var inBuckets uint64
					for _, n := range nativeBuckets(h) {
						inBuckets += uint64(n)
					}
					if got := h.GetZeroCount() + inBuckets; got != h.GetSampleCount() {
						t.Fatalf("count %d, but the buckets hold %d", h.GetSampleCount(), got)
					}
				}
				for _, b := range h.GetBucket() {
					if b.GetCumulativeCount() > h.GetSampleCount() {
						t.Fatalf("classic bucket le=%g holds %d, over the count %d", b.GetUpperBound(), b.GetCumulativeCount(), h.GetSampleCount())
					}
				}
			}
		})
	}
}

// collectResponses is the responses histogram of the only series c has.
func collectResponses(t *testing.T, c *latencyCollector) *dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 3)
	c.Collect(ch)
	close(ch)
	for m := range ch {
		if m.Desc() != c.descs[Response] {
			continue
		}
		var out dto.Metric
		if err := m.Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetHistogram()
	}
	t.Fatal("no responses series")
	return nil
}

// newLatencyFamily is a wamp_router family exposing its latency
// histograms as mode, in a registry of its own.
func newLatencyFamily(t *testing.T, mode LatencyExposition) (*prometheus.Registry, *Family) {
	t.Helper()
	reg := prometheus.NewRegistry()
	family, err := NewFamily(reg, FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10, Latency: mode})
	if err != nil {
		t.Fatal(err)
	}
	return reg, family
}
