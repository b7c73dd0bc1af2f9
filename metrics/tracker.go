package metrics

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Tracker times calls from their start until an answer or their deadline.
//
// Pending calls live in Sessions, one per WAMP connection or log sender, each
// with its own lock, so that reporting a call never takes a lock shared by
// all connections. A single sweeper (Run) ends calls whose deadline passed.
type Tracker struct {
	now                  func() time.Time
	epoch                time.Time
	defaultTimeout       time.Duration
	sweepInterval        time.Duration
	maxPending           int64
	maxPendingPerSession int

	pending atomic.Int64 // over all sessions, against maxPending

	mu       sync.Mutex
	sessions map[*Session]struct{}
}

// TrackerOpts configures a Tracker.
type TrackerOpts struct {
	// DefaultTimeout is the deadline of a call that does not carry its own.
	DefaultTimeout time.Duration
	// SweepInterval is how often Run looks for calls past their deadline.
	// It only delays when a timeout shows in the metrics: the recorded
	// duration is always the deadline itself. Default 10ms.
	SweepInterval time.Duration
	// Now is the clock; time.Now when nil. Tests inject their own.
	Now func() time.Time
	// MaxPending bounds pending calls over all sessions, and
	// MaxPendingPerSession those of one session, so that memory stays
	// bounded whatever clients send (a call costs about 100 bytes). At a
	// limit, new calls are not timed: they are counted in
	// <prefix>_untracked_calls_total and their answers ignored. Evicting
	// older calls instead would record timeouts that did not happen.
	// Defaults 1,000,000 and 10,000.
	MaxPending           int
	MaxPendingPerSession int
}

// NewTracker returns a Tracker. Call Run to have deadlines enforced.
func NewTracker(opts TrackerOpts) (*Tracker, error) {
	if opts.DefaultTimeout <= 0 {
		return nil, fmt.Errorf("tracker: default timeout must be positive, got %v", opts.DefaultTimeout)
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 10 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = 1_000_000
	}
	if opts.MaxPendingPerSession == 0 {
		opts.MaxPendingPerSession = 10_000
	}
	if opts.MaxPending < 1 || opts.MaxPendingPerSession < 1 {
		return nil, fmt.Errorf("tracker: pending limits must be positive, got %d and %d", opts.MaxPending, opts.MaxPendingPerSession)
	}
	return &Tracker{
		now:                  opts.Now,
		epoch:                opts.Now(),
		defaultTimeout:       opts.DefaultTimeout,
		sweepInterval:        opts.SweepInterval,
		maxPending:           int64(opts.MaxPending),
		maxPendingPerSession: opts.MaxPendingPerSession,
		sessions:             make(map[*Session]struct{}),
	}, nil
}

// nanos is the clock reading as nanoseconds since the tracker started: a
// plain int64 keeps pending entries small and comparisons cheap.
func (t *Tracker) nanos() int64 { return int64(t.now().Sub(t.epoch)) }

// Run ends calls past their deadline every SweepInterval until ctx is done.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.sweepInterval)
	defer tick.Stop()
	var batch []*Session
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			batch = t.Expire(batch[:0])
		}
	}
}

// Expire ends, as timeouts, every pending call whose deadline has passed.
// buf is reused for the list of sessions to avoid an allocation per sweep;
// the (possibly grown) buffer is returned.
func (t *Tracker) Expire(buf []*Session) []*Session {
	t.mu.Lock()
	for s := range t.sessions {
		buf = append(buf, s)
	}
	t.mu.Unlock()
	now := t.nanos()
	for _, s := range buf {
		s.expire(now)
	}
	clear(buf) // drop references to closed sessions
	return buf
}

// reserve takes a place for one pending call under MaxPending.
func (t *Tracker) reserve() bool {
	if t.pending.Add(1) > t.maxPending {
		t.pending.Add(-1)
		return false
	}
	return true
}

// Open starts a session whose calls are recorded in family.
func (t *Tracker) Open(family *Family) *Session {
	s := &Session{
		tracker: t,
		family:  family,
		calls:   make(map[uint64]pendingCall),
	}
	t.mu.Lock()
	t.sessions[s] = struct{}{}
	t.mu.Unlock()
	family.sessions.Inc()
	return s
}

// Session holds the pending calls of one caller: a WAMP session, or one
// sender of log lines. Request ids are only unique within it. All methods
// are safe for concurrent use and do nothing once the session is closed.
type Session struct {
	tracker *Tracker
	family  *Family

	mu         sync.Mutex
	calls      map[uint64]pendingCall
	deadlines  deadlineHeap
	seq        uint64
	registered []registration
	closed     bool // by Close or Abandon: no new calls or answers
	abandoned  bool // by Abandon: pending calls still expire
}

type pendingCall struct {
	series *procedureSeries // looked up once, when the call starts
	start  int64            // Tracker.nanos
	// deadline is when the tracker gives up on an answer; limit is the
	// duration a timeout records. They differ for a call whose timeout the
	// dealer enforces: its deadline is only a backstop.
	deadline int64
	limit    int64
	seq      uint64 // tells this call from an earlier one with the same id
}

// DealerBackstop is how long after a CALL's own timeout option the tracker
// waits for the dealer's answer before it gives up on the call. The dealer
// enforces that option itself and answers RESULT or wamp.error.timeout
// within milliseconds of it; the backstop only keeps a call that the dealer
// lost (or a log sender that went away) from staying pending for ever.
const DealerBackstop = 5 * time.Second

// Call starts timing call id to procedure, a CALL as its caller sent it.
//
// timeout is the CALL's own timeout option, or 0 for none. With none, the
// original tool's rule holds: no answer within the tracker's default
// timeout is a timeout. With one, the dealer enforces it (nexus starts its
// timer when it processes the CALL, a little after the observer saw it),
// so what the caller receives decides the outcome: RESULT is a response
// and wamp.error.timeout a timeout, each with its elapsed time, even if
// that is a hair past the option as measured here.
//
// A second Call with an id still pending is ignored: it is a continuation
// (progressive call invocations) or a client bug, and either way the first
// start is the one that counts.
func (s *Session) Call(id uint64, procedure string, timeout time.Duration) {
	now := s.tracker.nanos()
	s.startAt(now, id, s.family.acquire(procedure, now), timeout, timeout > 0)
}

// startAt starts a call at now (Tracker.nanos): the log path reads the
// clock once per read, not once per line, as time.Now is a large part of
// handling a line. A timeout <= 0 means the tracker's default. When
// byDealer, the timeout is the dealer's to enforce and the deadline is
// DealerBackstop after it; otherwise the deadline is the timeout.
//
// series was acquired for the call (Family.acquire); startAt releases it
// when the call does not start.
func (s *Session) startAt(now int64, id uint64, series *procedureSeries, timeout time.Duration, byDealer bool) {
	if timeout <= 0 {
		timeout, byDealer = s.tracker.defaultTimeout, false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.family.release(series)
		return
	}
	if _, dup := s.calls[id]; dup {
		s.mu.Unlock()
		s.family.release(series)
		return
	}
	if len(s.calls) >= s.tracker.maxPendingPerSession || !s.tracker.reserve() {
		s.mu.Unlock()
		s.family.release(series)
		s.family.untracked.Inc()
		return
	}
	s.seq++
	deadline := saturatingAdd(now, int64(timeout))
	if byDealer {
		deadline = saturatingAdd(deadline, int64(DealerBackstop))
	}
	c := pendingCall{series: series, start: now, deadline: deadline, limit: int64(timeout), seq: s.seq}
	s.calls[id] = c
	s.deadlines.push(deadlineEntry{deadline: c.deadline, id: id, seq: c.seq})
	s.mu.Unlock()
	s.family.pending.Add(1)
}

// saturatingAdd is a+b for b >= 0, or MaxInt64 where that overflows: a
// timeout option of centuries means no deadline at all.
func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Result ends call id with a final answer.
func (s *Session) Result(id uint64) { s.End(id, Response) }

// Error ends call id with an ERROR whose URI is errorURI. The dealer
// answers wamp.error.timeout when it enforces the call's timeout option:
// that is a timeout, not an error.
func (s *Session) Error(id uint64, errorURI string) { s.End(id, errorOutcome(errorURI)) }

// errorOutcome is generic so that the log path can pass a []byte from its
// read buffer without converting it.
func errorOutcome[T string | []byte](errorURI T) Outcome {
	if string(errorURI) == "wamp.error.timeout" {
		return Timeout
	}
	return Error
}

// Registered reports a registration of procedure by this session: its
// series exist from now on, with zero counts, and keep their slot while
// the registration lasts (until Unregistered or the session's end).
func (s *Session) Registered(procedure string) {
	series := s.family.register(procedure, s.tracker.nanos())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.registered) >= maxRegistrationsPerSession {
		s.family.unregister(series, s.tracker.nanos()) // not held: the slot may go when idle
		return
	}
	s.registered = append(s.registered, registration{procedure, series})
}

// Unregistered reports that a registration of procedure by this session
// ended.
func (s *Session) Unregistered(procedure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.registered {
		if r.procedure == procedure {
			s.registered = slices.Delete(s.registered, i, i+1)
			s.family.unregister(r.series, s.tracker.nanos())
			return
		}
	}
}

// maxRegistrationsPerSession bounds the registrations a session holds
// slots with; procedures are at most FamilyOpts.MaxProcedureLen bytes, so
// this bounds their bytes too.
const maxRegistrationsPerSession = 1024

type registration struct {
	procedure string
	series    *procedureSeries
}

// releaseRegistrationsLocked gives back the slots the session's
// registrations held.
func (s *Session) releaseRegistrationsLocked() {
	now := s.tracker.nanos()
	for _, r := range s.registered {
		s.family.unregister(r.series, now)
	}
	s.registered = nil
}

// End ends call id with outcome. An answer after the deadline counts as a
// timeout of exactly the call's timeout, whether or not the sweeper got
// there first; an answer for a call that is not pending (never made,
// already answered or already timed out) is ignored.
func (s *Session) End(id uint64, outcome Outcome) { s.endAt(s.tracker.nanos(), id, outcome) }

func (s *Session) endAt(now int64, id uint64, outcome Outcome) {
	s.mu.Lock()
	if s.closed { // an abandoned session's calls wait for their deadline
		s.mu.Unlock()
		return
	}
	c, ok := s.calls[id]
	if ok {
		delete(s.calls, id)
		s.compactLocked()
	}
	s.mu.Unlock()
	if !ok {
		return
	}
	elapsed := now - c.start
	if now > c.deadline {
		outcome, elapsed = Timeout, c.limit
	}
	s.tracker.pending.Add(-1)
	s.family.pending.Add(-1)
	s.family.record(c.series, outcome, time.Duration(elapsed), now)
}

// Pending returns the number of calls waiting for an answer.
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// Close ends the session of a caller that left. Calls whose deadline has
// passed are timeouts, whether or not the sweeper got to them: the caller
// waited that long in vain. The others are dropped without an outcome: a
// caller that left cannot receive their answers.
func (s *Session) Close() {
	s.expire(s.tracker.nanos())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	dropped := len(s.calls)
	for _, c := range s.calls {
		s.family.release(c.series)
	}
	s.calls = nil
	s.deadlines = nil
	s.releaseRegistrationsLocked()
	s.mu.Unlock()

	s.tracker.forget(s)
	s.tracker.pending.Add(-int64(dropped))
	s.family.pending.Add(-int64(dropped))
	s.family.sessions.Dec()
}

// Abandon ends the session of a log sender that went away (its TCP
// connection closed). Its calls were made and their answers will never be
// logged, so, as in the original tool, each ends as a timeout at its
// deadline; the tracker forgets the session when the last one has. Nothing
// new is accepted from it.
func (s *Session) Abandon() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.abandoned = true
	empty := len(s.calls) == 0
	s.releaseRegistrationsLocked()
	s.mu.Unlock()
	if empty {
		s.tracker.forget(s)
	}
	s.family.sessions.Dec()
}

func (t *Tracker) forget(s *Session) {
	t.mu.Lock()
	delete(t.sessions, s)
	t.mu.Unlock()
}

// expire ends the calls whose deadline is before now.
func (s *Session) expire(now int64) {
	type expired struct {
		series  *procedureSeries
		elapsed int64
	}
	var ended []expired
	s.mu.Lock()
	for len(s.deadlines) > 0 && s.deadlines[0].deadline < now {
		e := s.deadlines.pop()
		c, ok := s.calls[e.id]
		if !ok || c.seq != e.seq {
			continue // answered already; the heap entry was stale
		}
		delete(s.calls, e.id)
		ended = append(ended, expired{c.series, c.limit})
	}
	done := s.abandoned && len(s.calls) == 0
	s.mu.Unlock()
	if done {
		s.tracker.forget(s)
	}
	s.tracker.pending.Add(-int64(len(ended)))
	for _, e := range ended {
		s.family.pending.Add(-1)
		s.family.record(e.series, Timeout, time.Duration(e.elapsed), now)
	}
}

// compactLocked rebuilds the deadline heap when answered calls make up most
// of it. Answered calls leave their heap entry behind (removing it would
// cost a search); without this, a session with a long timeout and many fast
// calls would grow its heap without bound.
func (s *Session) compactLocked() {
	if len(s.deadlines) < 64 || len(s.deadlines) < 4*len(s.calls) {
		return
	}
	h := s.deadlines[:0]
	for id, c := range s.calls {
		h = append(h, deadlineEntry{deadline: c.deadline, id: id, seq: c.seq})
	}
	clear(s.deadlines[len(h):])
	s.deadlines = h
	s.deadlines.init()
}

type deadlineEntry struct {
	deadline int64
	id       uint64
	seq      uint64
}

// deadlineHeap is a min-heap by deadline. It is written out rather than
// using container/heap, whose interface{} Push would allocate per call.
type deadlineHeap []deadlineEntry

func (h *deadlineHeap) push(e deadlineEntry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

func (h *deadlineHeap) pop() deadlineEntry {
	old := *h
	top := old[0]
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	h.down(0)
	return top
}

func (h deadlineHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h deadlineHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].deadline <= h[i].deadline {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

func (h deadlineHeap) down(i int) {
	n := len(h)
	for {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < n && h[l].deadline < h[smallest].deadline {
			smallest = l
		}
		if r < n && h[r].deadline < h[smallest].deadline {
			smallest = r
		}
		if smallest == i {
			return
		}
		h[smallest], h[i] = h[i], h[smallest]
		i = smallest
	}
}
