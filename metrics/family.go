// Package metrics turns observed WAMP calls into Prometheus metrics.
//
// It knows nothing of nexus or WebSockets: the router's observer and the PHP
// log listener both report calls to a Tracker, which times them against a
// deadline and records each outcome in a Family of collectors named in the
// original php-wamp-observer's shape, <prefix>_<outcome>_seconds.
package metrics

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how a call ended. The set is fixed: label values and family
// names never come from outside.
type Outcome uint8

const (
	Response Outcome = iota // a final RESULT (or YIELD, or v1 CALLRESULT)
	Error                   // an ERROR answering the call
	Timeout                 // no answer by the deadline, or wamp.error.timeout
	numOutcomes
)

// String returns the outcome's name as used in metric names.
func (o Outcome) String() string {
	switch o {
	case Response:
		return "responses"
	case Error:
		return "errors"
	case Timeout:
		return "timeouts"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// OtherProcedure is the message label value under which calls are recorded
// once a family tracks its maximum number of distinct procedures. It has a
// space, so it is no valid WAMP URI, loose or strict, and no registered
// procedure can have it: a real procedure named "other" keeps a series of
// its own. (A call to a procedure named exactly this, which nexus answers
// with an error, is recorded under it as well.)
const OtherProcedure = "(other procedures)"

// DefaultBuckets are the original tool's histogram buckets, in seconds.
func DefaultBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
}

// Family is the set of collectors for one metric prefix, such as
// "wamp_router" (calls seen by the router) or "wamp_out" (calls logged by a
// PHP caller):
//
//	<prefix>_<outcome>_seconds        summary by message (count and sum only)
//	<prefix>_<outcome>_total_seconds  histogram over all procedures
//	<prefix>_calls_in_flight          gauge
//	<prefix>_sessions                 gauge
//	<prefix>_other_calls_total        counter of calls recorded under OtherProcedure
//	<prefix>_untracked_calls_total    counter of calls over the pending limits
type Family struct {
	maxProcedures int

	summaries  [numOutcomes]*prometheus.SummaryVec
	histograms [numOutcomes]prometheus.Histogram
	inFlight   prometheus.GaugeFunc
	sessions   prometheus.Gauge
	otherCalls prometheus.Counter
	untracked  prometheus.Counter

	// series maps a procedure to its observers. It is copied on write:
	// procedures are added rarely (and at most maxProcedures times), while
	// every call reads it, lock-free and, from a []byte, without allocating.
	series atomic.Pointer[map[string]*procedureSeries]
	mu     sync.Mutex // serialises additions, so the bound holds exactly
	other  *procedureSeries

	// pending backs the calls_in_flight gauge, and lets the log path sum
	// its families' pending calls.
	pending atomic.Int64
}

type procedureSeries struct {
	observers [numOutcomes]prometheus.Observer
	isOther   bool
}

// FamilyOpts configures a Family at construction.
type FamilyOpts struct {
	// Prefix names the families, e.g. "wamp_router". It must be a valid
	// metric name prefix; the HELP texts spell it with spaces.
	Prefix string
	// MaxProcedures bounds the distinct message label values. Calls to
	// further procedures are recorded under message=OtherProcedure.
	MaxProcedures int
	// Buckets of the _total_seconds histograms; DefaultBuckets when nil.
	Buckets []float64
}

// NewFamily creates a Family and registers its collectors with reg.
func NewFamily(reg prometheus.Registerer, opts FamilyOpts) (*Family, error) {
	if opts.MaxProcedures < 1 {
		return nil, fmt.Errorf("family %q: max procedures must be at least 1, got %d", opts.Prefix, opts.MaxProcedures)
	}
	buckets := opts.Buckets
	if buckets == nil {
		buckets = DefaultBuckets()
	}
	title := strings.ReplaceAll(opts.Prefix, "_", " ")
	f := &Family{maxProcedures: opts.MaxProcedures}
	var cs []prometheus.Collector
	for o := Outcome(0); o < numOutcomes; o++ {
		f.summaries[o] = prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name: opts.Prefix + "_" + o.String() + "_seconds",
			Help: "A summary of the " + title + " " + o.String() + ".",
		}, []string{"message"})
		f.histograms[o] = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    opts.Prefix + "_" + o.String() + "_total_seconds",
			Help:    "A histogram of the " + title + " " + o.String() + ".",
			Buckets: buckets,
		})
		cs = append(cs, f.summaries[o], f.histograms[o])
	}
	f.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: opts.Prefix + "_calls_in_flight",
		Help: "Calls of the " + title + " waiting for an answer or their deadline.",
	}, func() float64 { return float64(f.pending.Load()) })
	f.sessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: opts.Prefix + "_sessions",
		Help: "Sessions of the " + title + " currently open.",
	})
	f.otherCalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: opts.Prefix + "_other_calls_total",
		Help: `Calls of the ` + title + ` recorded under message="` + OtherProcedure + `" because the maximum number of distinct procedures was reached.`,
	})
	f.untracked = prometheus.NewCounter(prometheus.CounterOpts{
		Name: opts.Prefix + "_untracked_calls_total",
		Help: "Calls of the " + title + " not timed because a limit on pending calls was reached.",
	})
	cs = append(cs, f.inFlight, f.sessions, f.otherCalls, f.untracked)
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] { // all or nothing
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register %s metrics: %w", opts.Prefix, err)
		}
	}
	f.series.Store(&map[string]*procedureSeries{})
	return f, nil
}

func (f *Family) newSeries(procedure string) *procedureSeries {
	s := &procedureSeries{}
	for o := Outcome(0); o < numOutcomes; o++ {
		// WithLabelValues creates the child with zero counts: the series
		// is exposed from now on, so dashboards see no gaps.
		s.observers[o] = f.summaries[o].WithLabelValues(procedure)
	}
	return s
}

// lookup returns the series for procedure, creating them while the bound
// allows, else the OtherProcedure series.
func (f *Family) lookup(procedure string) *procedureSeries {
	if s, ok := (*f.series.Load())[procedure]; ok {
		return s
	}
	return f.add(procedure)
}

// lookupBytes is lookup for a procedure still in a read buffer: the map
// index with string(b) does not allocate.
func (f *Family) lookupBytes(procedure []byte) *procedureSeries {
	if s, ok := (*f.series.Load())[string(procedure)]; ok {
		return s
	}
	return f.add(string(procedure))
}

func (f *Family) add(procedure string) *procedureSeries {
	f.mu.Lock()
	defer f.mu.Unlock()
	current := *f.series.Load()
	if s, ok := current[procedure]; ok {
		return s
	}
	if len(current) >= f.maxProcedures || procedure == OtherProcedure {
		if f.other == nil { // created on first need, so it shows only when used
			f.other = f.newSeries(OtherProcedure)
			f.other.isOther = true
		}
		return f.other
	}
	// Label values must be valid UTF-8 (client_golang panics otherwise);
	// msgpack and CBOR clients can send anything.
	s := f.newSeries(strings.ToValidUTF8(procedure, "\uFFFD"))
	next := make(map[string]*procedureSeries, len(current)+1)
	maps.Copy(next, current)
	next[procedure] = s
	f.series.Store(&next)
	return s
}

// Declare makes the series of procedure exist with zero counts, as when a
// callee registers it. It counts towards the bound on procedures.
func (f *Family) Declare(procedure string) { f.lookup(procedure) }

// record adds one call that ended with outcome after d to its series.
func (f *Family) record(s *procedureSeries, outcome Outcome, d time.Duration) {
	if outcome >= numOutcomes {
		return
	}
	if s.isOther {
		f.otherCalls.Inc()
	}
	secs := d.Seconds()
	s.observers[outcome].Observe(secs)
	f.histograms[outcome].Observe(secs)
}
