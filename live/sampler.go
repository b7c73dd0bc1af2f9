// Package live serves the live page: per procedure, what the router, the
// PHP callers (wamp_out) and the PHP callees (wamp_in) measured over the
// last minutes, read from the tracker's families every second. It needs no
// Prometheus: a Sampler keeps a short history of the families' counters
// and latency distributions, and its handler serves the page (embedded,
// plain JS and SVG) and the JSON the page polls.
package live

import (
	"context"
	"sync"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// View names a family on the page: what measured the calls.
type View int

const (
	Router View = iota // the router's own family, wamp_router
	Caller             // the PHP callers' log family, wamp_out
	Callee             // the PHP callees' log family, wamp_in
	numViews
)

// Sources is where the Sampler reads. A func that is nil, or returns nil,
// means that source is not there (no log path, no such family yet).
type Sources struct {
	// Family returns the family of a view.
	Family func(View) *metrics.Family
	// Sessions and InFlight are the router's open sessions and calls in
	// flight.
	Sessions func() int64
	InFlight func() int64
	// LogLines returns the log lines received and rejected so far; nil
	// without a log path.
	LogLines func() (lines, bad uint64)
	// UDPDrops returns the kernel's drops on the log socket; false where
	// it cannot say.
	UDPDrops func() (uint64, bool)
}

// History lengths, in samples of one second.
const (
	rateWindow    = 10 // calls/s over the last 10 s
	ratioWindow   = 60 // error and timeout % over the last minute
	sparkStep     = 10 // one sparkline point per 10 s
	sparkPoints   = 30 // 5 minutes
	latencyWindow = 60 // percentiles over the last 60–70 s
	latencySnaps  = 7  // copies of the distribution, one every sparkStep
	secondsKept   = 11 // rateWindow + 1 one-second samples
	stepsKept     = 31 // sparkPoints + 1 ten-second samples
)

// counts are a procedure's calls ended so far, by outcome.
type counts [3]uint64

func (c counts) total() uint64 { return c[0] + c[1] + c[2] }

// history is what the sampler keeps of one procedure in one view: about
// 16 KB, almost all of it the 7 copies of the responses' distribution.
type history struct {
	seen    int64 // the tick it was last seen in its family
	seconds [secondsKept]counts
	steps   [stepsKept]counts
	snaps   [latencySnaps]*metrics.Latency // responses, at each sparkStep
	since   int64                          // the tick of its first sample
	proc    metrics.Procedure
}

type rowKey struct {
	view  View
	label string
}

// Sampler samples the Sources every second and keeps the last five
// minutes. Its memory is bounded by the families' own bound on procedures
// (-max-procedures, and the overflow): about 16 KB for each, per view.
type Sampler struct {
	src Sources
	now func() time.Time

	mu      sync.Mutex
	tick    int64 // samples taken
	started time.Time
	rows    map[rowKey]*history
	lines   [secondsKept][2]uint64 // log lines, bad lines
	hasLog  bool
	cached  []byte // the JSON of the current tick, once asked for
}

// NewSampler returns a Sampler of src; now is its clock (time.Now when
// nil). Run it, or call Sample every second.
func NewSampler(src Sources, now func() time.Time) *Sampler {
	if now == nil {
		now = time.Now
	}
	return &Sampler{src: src, now: now, started: now(), rows: map[rowKey]*history{}}
}

// Run samples every second until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// Sample reads every source once: one second of history.
func (s *Sampler) Sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick++
	s.cached = nil
	n := s.tick
	for v := View(0); v < numViews; v++ {
		f := s.family(v)
		if f == nil {
			continue
		}
		procs := f.Procedures()
		for _, p := range procs {
			k := rowKey{v, p.Label}
			h := s.rows[k]
			if h != nil && !h.proc.Same(p) {
				// Reclaimed and back within a second: new series,
				// counting from zero, whose history starts afresh.
				h = nil
			}
			if h == nil {
				h = &history{since: n}
				// The history before its first sample is its first
				// sample: a procedure seen late starts at 0 calls/s.
				for i := range h.seconds {
					h.seconds[i] = p.Calls
				}
				for i := range h.steps {
					h.steps[i] = p.Calls
				}
				s.rows[k] = h
			}
			h.seen, h.proc = n, p
			h.seconds[n%secondsKept] = p.Calls
			if n%sparkStep == 0 {
				h.steps[(n/sparkStep)%stepsKept] = p.Calls
				snap := h.snaps[(n/sparkStep)%latencySnaps]
				if snap == nil {
					snap = new(metrics.Latency)
					h.snaps[(n/sparkStep)%latencySnaps] = snap
				}
				p.ReadLatency(metrics.Response, snap)
			}
		}
	}
	for k, h := range s.rows {
		if h.seen != n { // gone from its family (reclaimed, or a new router)
			delete(s.rows, k)
		}
	}
	if s.src.LogLines != nil {
		lines, bad := s.src.LogLines()
		if !s.hasLog {
			for i := range s.lines {
				s.lines[i] = [2]uint64{lines, bad}
			}
			s.hasLog = true
		}
		s.lines[n%secondsKept] = [2]uint64{lines, bad}
	}
}

func (s *Sampler) family(v View) *metrics.Family {
	if s.src.Family == nil {
		return nil
	}
	return s.src.Family(v)
}
