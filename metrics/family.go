// Package metrics turns observed WAMP calls into Prometheus metrics.
//
// It knows nothing of nexus, WebSockets or log lines: the router's observer
// and the PHP log path (package wamplog) both report calls to a Tracker,
// which times them against a deadline and records each outcome in a Family
// of collectors named in the original php-wamp-observer's shape,
// <prefix>_<outcome>_seconds.
package metrics

import (
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
//	<prefix>_<outcome>_latency_seconds histogram by message (native, classic or both; see LatencyExposition)
//	<prefix>_calls_in_flight          gauge
//	<prefix>_sessions                 gauge
//	<prefix>_other_calls_total        counter of calls recorded under OtherProcedure
//	<prefix>_untracked_calls_total    counter of calls over the pending limits
//	<prefix>_error_reasons_total      counter of ERROR answers by message and error URI
//	<prefix>_interrupts_total         counter of INTERRUPTs by message (FamilyOpts.Interrupts)
type Family struct {
	name            string
	maxProcedures   int
	maxProcedureLen int
	idleAfter       int64     // Tracker.Now
	buckets         []float64 // of the _total_seconds histograms, and of classic latency histograms
	classicLatency  bool      // the distributions keep classic bucket counts too

	summaries  [numOutcomes]*prometheus.SummaryVec
	histograms [numOutcomes]prometheus.Histogram
	inFlight   prometheus.GaugeFunc
	sessions   prometheus.Gauge
	otherCalls prometheus.Counter
	untracked  prometheus.Counter
	interrupts *prometheus.CounterVec // nil without FamilyOpts.Interrupts
	errors     errorReasons

	// series maps a procedure to its observers. It is copied on write:
	// procedures are added rarely (and at most maxProcedures times), while
	// every call reads it, lock-free and, from a []byte, without allocating.
	series atomic.Pointer[map[string]*procedureSeries]
	mu     sync.Mutex // serialises additions and reclaims, so the bound holds exactly
	other  *procedureSeries
	// byLabel maps a label value to its series: procedures that differ
	// only in invalid UTF-8 share one label value, so they share one
	// series, and a series is deleted only when none of them uses it.
	byLabel     map[string]*procedureSeries
	lastReclaim int64 // Tracker.Now of the last reclaim pass

	// pending backs the calls_in_flight gauge, and lets the log path sum
	// its families' pending calls (Pending).
	pending atomic.Int64
}

// Name returns the family's prefix, e.g. "wamp_router" or "php_out".
func (f *Family) Name() string { return f.name }

// Pending returns the calls of the family waiting for an answer or their
// deadline, as <prefix>_calls_in_flight shows them: the log path sums its
// families' into wamp_observer_log_calls_pending.
func (f *Family) Pending() int64 { return f.pending.Load() }

// Sessions returns the sessions open now, as <prefix>_sessions shows them.
func (f *Family) Sessions() int64 {
	var m dto.Metric
	if f.sessions.Write(&m) != nil {
		return 0
	}
	return int64(m.GetGauge().GetValue())
}

// Totals are what a family has recorded so far, read from its collectors.
// Calls and Seconds are indexed by Outcome.
type Totals struct {
	Calls    [numOutcomes]uint64  // calls ended, as <prefix>_<outcome>_total_seconds counts them
	Seconds  [numOutcomes]float64 // the sum of their durations
	Sessions int64                // sessions open now (<prefix>_sessions)
}

// Totals returns the family's totals: for the final counts the program
// logs on its way out, and for tests that check invariants without a
// Gather. It reads the collectors, so it is not for a hot path.
func (f *Family) Totals() Totals {
	var t Totals
	var m dto.Metric
	for o := Outcome(0); o < numOutcomes; o++ {
		m.Reset()
		if f.histograms[o].Write(&m) == nil {
			t.Calls[o] = m.GetHistogram().GetSampleCount()
			t.Seconds[o] = m.GetHistogram().GetSampleSum()
		}
	}
	t.Sessions = f.Sessions()
	return t
}

// What the tracker reports to the family, the only way it touches the
// family's collectors: sessions opening and closing, calls starting, not
// tracked, dropped without an outcome, and ending with one. The tracker
// times calls; the family turns what it reports into metrics.

func (f *Family) sessionOpened() { f.sessions.Inc() }
func (f *Family) sessionClosed() { f.sessions.Dec() }
func (f *Family) callStarted()   { f.pending.Add(1) }
func (f *Family) callUntracked() { f.untracked.Inc() }

// callsDropped ends n pending calls without an outcome; their series were
// released.
func (f *Family) callsDropped(n int) { f.pending.Add(-int64(n)) }

// callEnded ends a pending call on series with outcome after d, at now.
// errorURI is the URI of the ERROR that ended it, or nil.
func (f *Family) callEnded(series *procedureSeries, outcome Outcome, d time.Duration, now int64, errorURI []byte) {
	f.pending.Add(-1)
	f.record(series, outcome, d, now, errorURI)
}

// interrupted counts an INTERRUPT sent for a pending call on series.
func (f *Family) interrupted(series *procedureSeries) {
	if series.interrupts != nil {
		series.interrupts.Inc()
	}
}

type procedureSeries struct {
	observers  [numOutcomes]prometheus.Observer
	interrupts prometheus.Counter // nil without FamilyOpts.Interrupts
	// errors are the series' <prefix>_error_reasons_total children by
	// error URI, copied on write under Family.mu (see errorReasons).
	errors  atomic.Pointer[map[string]prometheus.Counter]
	isOther bool
	label   string
	// latency holds the durations by outcome, each created with its
	// first call.
	latency [numOutcomes]atomic.Pointer[distribution]

	// What keeps the series' slot: calls pending on it, registrations of
	// it by sessions still open, and its last use (Tracker.Now). A
	// reclaimed series has pending set to retired, so that a call that
	// looked it up just before sees that and looks again.
	pending       atomic.Int64
	registrations atomic.Int64
	lastUsed      atomic.Int64
}

// touch notes a use of s at now. It writes only when a second has passed
// since the last write: the idle rule has no finer grain, and a store per
// call would bounce the cache line between cores for a busy procedure.
func (s *procedureSeries) touch(now int64) {
	if now-s.lastUsed.Load() >= int64(time.Second) {
		s.lastUsed.Store(now)
	}
}

// retired is the pending count of a reclaimed series: far below zero, so
// that increments by racing calls keep it negative.
const retired = math.MinInt64 / 2

// FamilyOpts configures a Family at construction.
type FamilyOpts struct {
	// Prefix names the families, e.g. "wamp_router". It must be a valid
	// metric name prefix; the HELP texts spell it with spaces.
	Prefix string
	// MaxProcedures bounds the distinct message label values. Calls to
	// further procedures are recorded under message=OtherProcedure.
	// DefaultMaxProcedures when 0.
	MaxProcedures int
	// MaxProcedureLen bounds a message label value in bytes: a longer
	// procedure is recorded under OtherProcedure, so that the scrape has a
	// worst-case size. DefaultMaxProcedureLen when 0.
	MaxProcedureLen int
	// ProcedureIdle is how long a procedure keeps its slot with no call,
	// no pending call and no registration, once the family is full: the
	// next new procedure then takes the slot of any such idle one, whose
	// series leave the scrape. So an attack that fills the slots with
	// made-up procedures wears off. DefaultProcedureIdle when 0.
	ProcedureIdle time.Duration
	// Buckets of the _total_seconds histograms, and of the classic
	// latency histograms; DefaultBuckets when nil.
	Buckets []float64
	// Latency is how the per-procedure latency histograms are exposed;
	// LatencyNative when zero.
	Latency LatencyExposition
	// MaxErrorURIs bounds the distinct error label values of
	// <prefix>_error_reasons_total, and MaxErrorSeries its series; URIs
	// beyond either, or longer than MaxProcedureLen, are counted under
	// error=OtherError. DefaultMaxErrorURIs and DefaultMaxErrorSeries when
	// 0.
	MaxErrorURIs, MaxErrorSeries int
	// Interrupts adds <prefix>_interrupts_total, the INTERRUPTs sent for
	// the family's calls (Session.Interrupt): the callee side of the
	// router.
	Interrupts bool
	// ConstLabels are added to every series of the family, e.g. the realm
	// when the router serves several.
	ConstLabels prometheus.Labels
}

// NewFamily creates a Family and registers its collectors with reg.
func NewFamily(reg prometheus.Registerer, opts FamilyOpts) (*Family, error) {
	if opts.MaxProcedures == 0 {
		opts.MaxProcedures = DefaultMaxProcedures
	}
	if opts.MaxProcedures < 1 {
		return nil, fmt.Errorf("family %q: max procedures must be at least 1, got %d", opts.Prefix, opts.MaxProcedures)
	}
	if opts.MaxProcedureLen == 0 {
		opts.MaxProcedureLen = DefaultMaxProcedureLen
	}
	if opts.ProcedureIdle == 0 {
		opts.ProcedureIdle = DefaultProcedureIdle
	}
	if opts.MaxErrorURIs == 0 {
		opts.MaxErrorURIs = DefaultMaxErrorURIs
	}
	if opts.MaxErrorSeries == 0 {
		opts.MaxErrorSeries = DefaultMaxErrorSeries
	}
	if opts.MaxErrorURIs < 1 || opts.MaxErrorSeries < 1 {
		return nil, fmt.Errorf("family %q: error URI bounds must be positive, got %d and %d", opts.Prefix, opts.MaxErrorURIs, opts.MaxErrorSeries)
	}
	if opts.MaxProcedureLen < 1 || opts.ProcedureIdle < 0 {
		return nil, fmt.Errorf("family %q: max procedure length must be positive and the idle time not negative, got %d and %v",
			opts.Prefix, opts.MaxProcedureLen, opts.ProcedureIdle)
	}
	buckets := opts.Buckets
	if buckets == nil {
		buckets = DefaultBuckets()
	}
	title := strings.ReplaceAll(opts.Prefix, "_", " ")
	f := &Family{
		name:            opts.Prefix,
		maxProcedures:   opts.MaxProcedures,
		maxProcedureLen: opts.MaxProcedureLen,
		idleAfter:       int64(opts.ProcedureIdle),
		buckets:         buckets,
		classicLatency:  opts.Latency.classic(),
		byLabel:         map[string]*procedureSeries{},
	}
	var cs []prometheus.Collector
	for o := Outcome(0); o < numOutcomes; o++ {
		f.summaries[o] = prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:        opts.Prefix + "_" + o.String() + "_seconds",
			Help:        "A summary of the " + title + " " + o.String() + ".",
			ConstLabels: opts.ConstLabels,
		}, []string{"message"})
		f.histograms[o] = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        opts.Prefix + "_" + o.String() + "_total_seconds",
			Help:        "A histogram of the " + title + " " + o.String() + ".",
			Buckets:     buckets,
			ConstLabels: opts.ConstLabels,
		})
		cs = append(cs, f.summaries[o], f.histograms[o])
	}
	f.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        opts.Prefix + "_calls_in_flight",
		Help:        "Calls of the " + title + " waiting for an answer or their deadline.",
		ConstLabels: opts.ConstLabels,
	}, func() float64 { return float64(f.pending.Load()) })
	f.sessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        opts.Prefix + "_sessions",
		Help:        "Sessions of the " + title + " currently open.",
		ConstLabels: opts.ConstLabels,
	})
	f.otherCalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        opts.Prefix + "_other_calls_total",
		Help:        `Calls of the ` + title + ` recorded under message="` + OtherProcedure + `" because the maximum number of distinct procedures was reached.`,
		ConstLabels: opts.ConstLabels,
	})
	f.untracked = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        opts.Prefix + "_untracked_calls_total",
		Help:        "Calls of the " + title + " not timed because a limit on pending calls was reached.",
		ConstLabels: opts.ConstLabels,
	})
	f.errors.init(opts, title)
	cs = append(cs, f.inFlight, f.sessions, f.otherCalls, f.untracked, f.errors.vec)
	if opts.Interrupts {
		f.interrupts = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        opts.Prefix + "_interrupts_total",
			Help:        "INTERRUPTs sent to callees for calls of the " + title + ", by procedure.",
			ConstLabels: opts.ConstLabels,
		}, []string{"message"})
		cs = append(cs, f.interrupts)
	}
	if opts.Latency != LatencyOff {
		cs = append(cs, newLatencyCollector(f, opts.Prefix, title, opts.Latency, opts.ConstLabels))
	}
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

// DefaultMaxProcedures is FamilyOpts.MaxProcedures's default.
const DefaultMaxProcedures = 1000

// DefaultMaxProcedureLen is FamilyOpts.MaxProcedureLen's default: WAMP
// procedure URIs are dotted names, far shorter.
const DefaultMaxProcedureLen = 256

// DefaultProcedureIdle is FamilyOpts.ProcedureIdle's default.
const DefaultProcedureIdle = 10 * time.Minute

func (f *Family) newSeries(label string) *procedureSeries {
	s := &procedureSeries{label: label}
	for o := Outcome(0); o < numOutcomes; o++ {
		// WithLabelValues creates the child with zero counts: the series
		// is exposed from now on, so dashboards see no gaps.
		s.observers[o] = f.summaries[o].WithLabelValues(label)
	}
	if f.interrupts != nil {
		s.interrupts = f.interrupts.WithLabelValues(label)
	}
	return s
}

// lookup returns the series for procedure, creating them while the bound
// allows, else the OtherProcedure series. now is Tracker.Now.
func (f *Family) lookup(procedure string, now int64) *procedureSeries {
	if len(procedure) > f.maxProcedureLen {
		return f.overflow()
	}
	if s, ok := (*f.series.Load())[procedure]; ok {
		return s
	}
	return f.add(procedure, now)
}

// lookupBytes is lookup for a procedure still in a read buffer: the map
// index with string(b) does not allocate.
func (f *Family) lookupBytes(procedure []byte, now int64) *procedureSeries {
	if len(procedure) > f.maxProcedureLen {
		return f.overflow()
	}
	if s, ok := (*f.series.Load())[string(procedure)]; ok {
		return s
	}
	return f.add(string(procedure), now)
}

// acquire is lookup for a call that starts: the series counts it as
// pending until release, so that its slot is not reclaimed under it.
func (f *Family) acquire(procedure string, now int64) *procedureSeries {
	return f.hold(f.lookup(procedure, now), procedure, now)
}

func (f *Family) acquireBytes(procedure []byte, now int64) *procedureSeries {
	s := f.lookupBytes(procedure, now)
	if s.pending.Add(1) > 0 { // the common case, without a string(procedure)
		s.touch(now)
		return s
	}
	s.pending.Add(-1)
	return f.hold(f.lookup(string(procedure), now), string(procedure), now)
}

// hold counts a pending call on s, or, if s was reclaimed meanwhile, on
// the series procedure has now.
func (f *Family) hold(s *procedureSeries, procedure string, now int64) *procedureSeries {
	for s.pending.Add(1) <= 0 {
		s.pending.Add(-1)
		s = f.add(procedure, now) // after the reclaim that retired s
	}
	s.touch(now)
	return s
}

// release ends a pending call on s without an outcome.
func (f *Family) release(s *procedureSeries) { s.pending.Add(-1) }

func (f *Family) overflow() *procedureSeries {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.overflowLocked()
}

func (f *Family) overflowLocked() *procedureSeries {
	if f.other == nil { // created on first need, so it shows only when used
		f.other = f.newSeries(OtherProcedure)
		f.other.isOther = true
	}
	return f.other
}

func (f *Family) add(procedure string, now int64) *procedureSeries {
	f.mu.Lock()
	defer f.mu.Unlock()
	current := *f.series.Load()
	if s, ok := current[procedure]; ok {
		return s
	}
	if len(procedure) > f.maxProcedureLen || procedure == OtherProcedure {
		return f.overflowLocked()
	}
	if len(current) >= f.maxProcedures {
		current = f.reclaimLocked(current, now)
		if len(current) >= f.maxProcedures {
			return f.overflowLocked()
		}
	}
	// Label values must be valid UTF-8 (client_golang panics otherwise);
	// msgpack and CBOR clients can send anything.
	label := strings.ToValidUTF8(procedure, "\uFFFD")
	s, ok := f.byLabel[label]
	if !ok {
		s = f.newSeries(label)
		s.lastUsed.Store(now)
		f.byLabel[label] = s
	}
	next := make(map[string]*procedureSeries, len(current)+1)
	maps.Copy(next, current)
	next[procedure] = s
	f.series.Store(&next)
	return s
}

// reclaimLocked gives back the slots of idle procedures (see
// FamilyOpts.ProcedureIdle) and returns the map without them. It scans
// every slot, so it runs at most once per second.
func (f *Family) reclaimLocked(current map[string]*procedureSeries, now int64) map[string]*procedureSeries {
	if now-f.lastReclaim < int64(time.Second) && f.lastReclaim != 0 {
		return current
	}
	f.lastReclaim = now
	var idle []*procedureSeries
	for label, s := range f.byLabel {
		if now-s.lastUsed.Load() < f.idleAfter || s.registrations.Load() != 0 {
			continue
		}
		if !s.pending.CompareAndSwap(0, retired) {
			continue // a call is pending on it
		}
		if s.registrations.Load() != 0 { // registered meanwhile
			s.pending.Add(-retired)
			continue
		}
		delete(f.byLabel, label)
		idle = append(idle, s)
	}
	if len(idle) == 0 {
		return current
	}
	next := make(map[string]*procedureSeries, len(current))
	for p, s := range current {
		if s.pending.Load() >= 0 || s.isOther {
			next[p] = s
		}
	}
	f.series.Store(&next)
	for _, s := range idle {
		for o := Outcome(0); o < numOutcomes; o++ {
			f.summaries[o].DeleteLabelValues(s.label)
		}
		if f.interrupts != nil {
			f.interrupts.DeleteLabelValues(s.label)
		}
		f.errors.forgetLocked(s)
	}
	return next
}

// Declare makes the series of procedure exist with zero counts, as when a
// callee registers it, and counts as a use of it. It counts towards the
// bound on procedures.
func (f *Family) Declare(procedure string, now int64) {
	f.lookup(procedure, now).lastUsed.Store(now)
}

// register counts a registration of procedure by a session that is open,
// which keeps its slot until unregister.
func (f *Family) register(procedure string, now int64) *procedureSeries {
	s := f.lookup(procedure, now)
	for {
		s.registrations.Add(1)
		if s.pending.Load() >= 0 {
			s.lastUsed.Store(now)
			return s
		}
		s.registrations.Add(-1) // reclaimed meanwhile
		s = f.add(procedure, now)
	}
}

func (f *Family) unregister(s *procedureSeries, now int64) {
	s.registrations.Add(-1)
	s.lastUsed.Store(now)
}

// record adds one call that ended with outcome after d to its series,
// at now (Tracker.Now): the end of a call is a use of its procedure.
// errorURI is the URI of the ERROR that answered it, or nil.
func (f *Family) record(s *procedureSeries, outcome Outcome, d time.Duration, now int64, errorURI []byte) {
	if outcome >= numOutcomes {
		return
	}
	if errorURI != nil {
		f.errors.count(f, s, errorURI)
	}
	if s.isOther {
		f.otherCalls.Inc()
	}
	secs := d.Seconds()
	s.observers[outcome].Observe(secs)
	f.histograms[outcome].Observe(secs)
	s.distribution(outcome, f).observe(d, f.buckets)
	s.touch(now)
	s.pending.Add(-1) // after the observation, so it is never lost to a reclaim
}

// distribution returns the series' distribution for outcome, creating it
// on first use.
func (s *procedureSeries) distribution(o Outcome, f *Family) *distribution {
	if d := s.latency[o].Load(); d != nil {
		return d
	}
	classic := 0
	if f.classicLatency {
		classic = len(f.buckets)
	}
	s.latency[o].CompareAndSwap(nil, newDistribution(classic))
	return s.latency[o].Load()
}

// readLatency copies the distribution for o into l: all zero before the
// first call with that outcome.
func (s *procedureSeries) readLatency(o Outcome, l *Latency) {
	if d := s.latency[o].Load(); d != nil {
		d.read(l)
		return
	}
	classic := l.Classic[:0]
	*l = Latency{Classic: classic}
}

// allSeries returns the family's series, one per message label value,
// the OtherProcedure one included once used.
func (f *Family) allSeries() []*procedureSeries {
	f.mu.Lock()
	defer f.mu.Unlock()
	all := make([]*procedureSeries, 0, len(f.byLabel)+1)
	for _, s := range f.byLabel {
		all = append(all, s)
	}
	if f.other != nil {
		all = append(all, f.other)
	}
	return all
}

// Procedure is one procedure of a family, for readers of its figures
// other than Prometheus (the live page).
type Procedure struct {
	Label         string              // the message label value
	Calls         [numOutcomes]uint64 // calls ended, by Outcome
	Registrations int64               // by sessions open now (Session.Registered)
	s             *procedureSeries
}

// Same says whether p and q are the same series: a procedure whose slot
// was reclaimed and that came back has new series, counting from zero.
func (p Procedure) Same(q Procedure) bool { return p.s == q.s }

// ReadLatency copies the distribution of the procedure's calls that ended
// with o into l.
func (p Procedure) ReadLatency(o Outcome, l *Latency) { p.s.readLatency(o, l) }

// Procedures returns the family's procedures as they are now, in no
// particular order.
func (f *Family) Procedures() []Procedure {
	all := f.allSeries()
	ps := make([]Procedure, len(all))
	for i, s := range all {
		ps[i] = Procedure{Label: s.label, Registrations: s.registrations.Load(), s: s}
		for o := Outcome(0); o < numOutcomes; o++ {
			if d := s.latency[o].Load(); d != nil {
				ps[i].Calls[o] = d.count.Load()
			}
		}
	}
	return ps
}
