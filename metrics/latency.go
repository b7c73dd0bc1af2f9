package metrics

import (
	"math"
	"sort"
	"sync/atomic"
	"time"
)

// Latency distributions. For every procedure and outcome the tracker keeps
// the durations of the calls in exponential buckets, the buckets of a
// Prometheus native histogram of schema 3: bucket k holds the durations d
// with 2^((k-1)/8) < d ≤ 2^(k/8) seconds, each bucket 9.05% wider than the
// one below it. Any quantile taken from them is within one bucket of the
// exact one: its relative error is below 2^(1/8)-1 = 9.05%.
//
// The range is bounded so that a distribution's memory is: durations up
// to 2^-20 s (0.95 µs) go to the zero bucket, and durations over 2^13 s
// (2.3 hours, which only a call's own timeout option can reach) to the top
// bucket. That is 264 buckets, kept in 33 octaves of 8 counters each; an
// octave is allocated when a duration first falls in it, so a procedure
// whose calls take between 1 and 16 ms holds 4 of them.
const (
	LatencySchema = 3 // of the native histograms; 8 buckets per octave

	latencyBucketsPerOctave = 1 << LatencySchema
	latencyMinExp           = -20 // 2^-20 s: the zero bucket's threshold
	latencyMaxExp           = 13  // 2^13 s: the top bucket's upper bound
	latencyOctaves          = latencyMaxExp - latencyMinExp
	// LatencyBuckets is the number of buckets of a distribution, besides
	// the zero bucket.
	LatencyBuckets = latencyOctaves * latencyBucketsPerOctave
)

// latencyZeroThreshold is the upper bound, in seconds, of the zero bucket.
var latencyZeroThreshold = math.Ldexp(1, latencyMinExp)

// LatencyZeroThreshold is the upper bound, in seconds, of the zero bucket.
func LatencyZeroThreshold() float64 { return latencyZeroThreshold }

// latencyFracBounds are the upper bounds of one octave's buckets as
// fractions of math.Frexp, [0.5, 1): 0.5·2^(j/8).
var latencyFracBounds = func() [latencyBucketsPerOctave]float64 {
	var b [latencyBucketsPerOctave]float64
	for j := range b {
		b[j] = math.Ldexp(math.Exp2(float64(j)/latencyBucketsPerOctave), -1)
	}
	return b
}()

// LatencyBucketKey is the native histogram bucket key of the index-th
// bucket of a distribution (0 ≤ index < LatencyBuckets).
func LatencyBucketKey(index int) int {
	return latencyMinExp*latencyBucketsPerOctave + 1 + index
}

// LatencyBucketUpper is the upper bound, in seconds, of the index-th
// bucket.
func LatencyBucketUpper(index int) float64 {
	return math.Exp2(float64(LatencyBucketKey(index)) / latencyBucketsPerOctave)
}

// latencyIndex is the bucket of d seconds, or -1 for the zero bucket.
func latencyIndex(secs float64) int {
	if secs <= latencyZeroThreshold {
		return -1
	}
	frac, exp := math.Frexp(secs)
	// The first bound at or above frac: 0..8, where 8 is the next
	// octave's bucket 0 (frac just below 1).
	j := sort.SearchFloat64s(latencyFracBounds[:], frac)
	key := (exp-1)*latencyBucketsPerOctave + j
	index := key - (latencyMinExp*latencyBucketsPerOctave + 1)
	return min(index, LatencyBuckets-1)
}

type latencyOctave [latencyBucketsPerOctave]atomic.Uint64

// distribution is one procedure's durations for one outcome. Observations
// are lock-free: a few atomic adds, and an allocation only the first time
// a duration falls in an octave.
type distribution struct {
	count   atomic.Uint64 // observations; the buckets' sum once they are done
	zero    atomic.Uint64
	sumNs   atomic.Int64 // exact; wraps after 292 years of summed time
	octaves [latencyOctaves]atomic.Pointer[latencyOctave]
	classic []atomic.Uint64 // per classic bucket (le), +Inf last; nil unless kept
}

func newDistribution(classicBuckets int) *distribution {
	d := &distribution{}
	if classicBuckets > 0 {
		d.classic = make([]atomic.Uint64, classicBuckets+1)
	}
	return d
}

func (d *distribution) observe(dur time.Duration, classicBounds []float64) {
	secs := dur.Seconds()
	d.count.Add(1)
	d.sumNs.Add(int64(dur))
	if d.classic != nil {
		d.classic[sort.SearchFloat64s(classicBounds, secs)].Add(1)
	}
	i := latencyIndex(secs)
	if i < 0 {
		d.zero.Add(1)
		return
	}
	o := d.octaves[i/latencyBucketsPerOctave].Load()
	if o == nil {
		fresh := new(latencyOctave)
		if d.octaves[i/latencyBucketsPerOctave].CompareAndSwap(nil, fresh) {
			o = fresh
		} else {
			o = d.octaves[i/latencyBucketsPerOctave].Load()
		}
	}
	o[i%latencyBucketsPerOctave].Add(1)
}

// Latency is a copy of a distribution: its bucket counts, and their total
// and sum. Count is the sum of the buckets, read one by one while calls
// may go on ending, so it is what the buckets say, never more or less.
type Latency struct {
	Count   uint64
	Sum     time.Duration
	Zero    uint64                 // durations up to LatencyZeroThreshold
	Buckets [LatencyBuckets]uint64 // see LatencyBucketUpper
	Classic []uint64               // cumulative, per FamilyOpts.Buckets bound; nil unless kept
}

// read copies d into l. The classic counts are read first and the
// native ones after, as observe adds them in that order: no classic bucket
// then holds more than Count, which Prometheus requires (and Count is the
// native buckets' sum, which it requires too).
func (d *distribution) read(l *Latency) {
	l.Classic = l.Classic[:0]
	var cum uint64
	for i := range d.classic {
		cum += d.classic[i].Load()
		l.Classic = append(l.Classic, cum)
	}
	l.Sum = time.Duration(d.sumNs.Load())
	l.Zero = d.zero.Load()
	l.Count = l.Zero
	for oi := range d.octaves {
		o := d.octaves[oi].Load()
		for j := range latencyBucketsPerOctave {
			var n uint64
			if o != nil {
				n = o[j].Load()
			}
			l.Buckets[oi*latencyBucketsPerOctave+j] = n
			l.Count += n
		}
	}
	for i := range l.Classic { // a call counted in both only now
		l.Classic[i] = min(l.Classic[i], l.Count)
	}
}

// Sub takes older, an earlier copy of the same distribution, off l: what
// happened in between.
func (l *Latency) Sub(older *Latency) {
	l.Count -= older.Count
	l.Sum -= older.Sum
	l.Zero -= older.Zero
	for i := range l.Buckets {
		l.Buckets[i] -= older.Buckets[i]
	}
	for i := range min(len(l.Classic), len(older.Classic)) {
		l.Classic[i] -= older.Classic[i]
	}
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) of the durations: the
// bucket that holds the rank, interpolated linearly within it (as
// Prometheus 2.x's histogram_quantile does for a native histogram; 3.x
// interpolates exponentially, the same bucket either way). A rank in the
// zero bucket is its threshold. It is within the bucket of the exact
// quantile, 9.05% of it. With no durations it is 0.
func (l *Latency) Quantile(q float64) time.Duration {
	if l.Count == 0 {
		return 0
	}
	rank := q * float64(l.Count)
	seen := float64(l.Zero)
	if rank <= seen {
		return time.Duration(latencyZeroThreshold * float64(time.Second))
	}
	for i, n := range l.Buckets {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			upper := LatencyBucketUpper(i)
			lower := upper / math.Exp2(1.0/latencyBucketsPerOctave)
			secs := lower + (upper-lower)*(rank-seen)/float64(n)
			return time.Duration(secs * float64(time.Second))
		}
		seen += float64(n)
	}
	return time.Duration(LatencyBucketUpper(LatencyBuckets-1) * float64(time.Second))
}
