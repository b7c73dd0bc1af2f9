package metrics

import (
	"fmt"
	"math"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// LatencyExposition is how a family exposes its per-procedure latency
// distributions, the <prefix>_<outcome>_latency_seconds histograms.
type LatencyExposition uint8

const (
	// LatencyNative exposes native histograms (schema 3, up to 264
	// buckets and the zero bucket per series), which Prometheus ingests
	// over the protobuf scrape with --enable-feature=native-histograms.
	// The text formats show only their count and sum.
	LatencyNative LatencyExposition = iota
	// LatencyClassic exposes classic histograms with the buckets of the
	// _total_seconds ones, for Prometheus servers without native
	// histograms.
	LatencyClassic
	// LatencyBoth exposes both in one histogram: Prometheus with native
	// histograms takes the native one (and the classic one too with
	// scrape_classic_histograms), any other the classic one.
	LatencyBoth
	// LatencyOff exposes no per-procedure histograms. The tracker keeps
	// the distributions all the same (the live page reads them).
	LatencyOff
)

var latencyExpositionNames = [...]string{"native", "classic", "both", "off"}

func (e LatencyExposition) String() string {
	if int(e) < len(latencyExpositionNames) {
		return latencyExpositionNames[e]
	}
	return fmt.Sprintf("LatencyExposition(%d)", uint8(e))
}

// ParseLatencyExposition reads "native", "classic", "both" or "off".
func ParseLatencyExposition(s string) (LatencyExposition, error) {
	for i, name := range latencyExpositionNames {
		if s == name {
			return LatencyExposition(i), nil
		}
	}
	return 0, fmt.Errorf("latency histograms: want one of %s, got %q", strings.Join(latencyExpositionNames[:], ", "), s)
}

// Set parses s (ParseLatencyExposition): a LatencyExposition is a flag.Value.
func (e *LatencyExposition) Set(s string) error {
	v, err := ParseLatencyExposition(s)
	if err != nil {
		return err
	}
	*e = v
	return nil
}

func (e LatencyExposition) native() bool  { return e == LatencyNative || e == LatencyBoth }
func (e LatencyExposition) classic() bool { return e == LatencyClassic || e == LatencyBoth }

// latencyCollector exposes a family's distributions, one histogram series
// per procedure and outcome, built at scrape time from the tracker's
// counters: the hot path never touches client_golang's histograms for
// them.
type latencyCollector struct {
	f     *Family
	mode  LatencyExposition
	descs [numOutcomes]*prometheus.Desc
}

func newLatencyCollector(f *Family, prefix, title string, mode LatencyExposition, constLabels prometheus.Labels) *latencyCollector {
	c := &latencyCollector{f: f, mode: mode}
	for o := Outcome(0); o < numOutcomes; o++ {
		c.descs[o] = prometheus.NewDesc(prefix+"_"+o.String()+"_latency_seconds",
			"A histogram of the "+title+" "+o.String()+" by procedure.", []string{"message"}, constLabels)
	}
	return c
}

func (c *latencyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *latencyCollector) Collect(ch chan<- prometheus.Metric) {
	var l Latency
	for _, s := range c.f.allSeries() {
		for o := Outcome(0); o < numOutcomes; o++ {
			s.readLatency(o, &l)
			ch <- c.metric(o, s.label, &l)
		}
	}
}

// metric builds one series from l; its Write is called once, by the
// registry's gathering, so it is built here as it will be written.
func (c *latencyCollector) metric(o Outcome, label string, l *Latency) prometheus.Metric {
	h := &dto.Histogram{
		SampleCount: new(l.Count),
		SampleSum:   new(l.Sum.Seconds()),
	}
	if c.mode.native() {
		h.Schema = new(int32(LatencySchema))
		h.ZeroThreshold = new(latencyZeroThreshold)
		h.ZeroCount = new(l.Zero)
		h.PositiveSpan, h.PositiveDelta = nativeSpans(&l.Buckets)
	}
	if c.mode.classic() {
		bounds := c.f.buckets
		h.Bucket = make([]*dto.Bucket, len(bounds))
		for i, le := range bounds {
			var n uint64
			if i < len(l.Classic) {
				n = l.Classic[i]
			}
			h.Bucket[i] = &dto.Bucket{UpperBound: new(le), CumulativeCount: new(n)}
		}
	}
	return &latencyMetric{desc: c.descs[o], labels: prometheus.MakeLabelPairs(c.descs[o], []string{label}), h: h}
}

// nativeSpans encodes buckets as a native histogram's spans and deltas.
// A gap of up to two empty buckets stays inside a span (cheaper than a new
// span), as client_golang does.
func nativeSpans(buckets *[LatencyBuckets]uint64) ([]*dto.BucketSpan, []int64) {
	var spans []*dto.BucketSpan
	var deltas []int64
	var prev int64      // the previous bucket's count in the encoding
	next := math.MinInt // the key after the last one encoded
	for i, n := range buckets {
		if n == 0 {
			continue
		}
		key := LatencyBucketKey(i)
		if gap := key - next; next == math.MinInt || gap > 2 {
			offset := key
			if next != math.MinInt {
				offset = gap
			}
			spans = append(spans, &dto.BucketSpan{Offset: new(int32(offset)), Length: new(uint32(0))})
		} else {
			for range gap { // empty buckets inside the span
				*spans[len(spans)-1].Length++
				deltas = append(deltas, -prev)
				prev = 0
			}
		}
		*spans[len(spans)-1].Length++
		deltas = append(deltas, int64(n)-prev)
		prev = int64(n)
		next = key + 1
	}
	if len(spans) == 0 {
		// No bucket yet: one empty span, so that the series is a native
		// histogram even before its first call.
		spans = []*dto.BucketSpan{{Offset: new(int32(0)), Length: new(uint32(0))}}
	}
	return spans, deltas
}

type latencyMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	h      *dto.Histogram
}

func (m *latencyMetric) Desc() *prometheus.Desc { return m.desc }

func (m *latencyMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Histogram = m.h
	return nil
}
