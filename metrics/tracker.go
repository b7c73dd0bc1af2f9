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
//
// The sweeper must not visit every session: 10,000 log senders in 16
// families are 160,000 sessions, and visiting them all every SweepInterval
// took a whole core. So the tracker keeps a min-heap of the sessions that
// have pending calls, keyed by a lower bound of each one's earliest
// deadline (Session.sched), and a sweep pops only the sessions whose key
// is due: its cost is proportional to what expires (and to answered calls'
// leftover deadline entries), not to how many sessions exist. A call takes
// the tracker's lock only when it moves its session's key earlier: the
// first call of a session with nothing pending, or a call whose deadline
// is before every other one pending there. Lock order: Session.mu, then
// Tracker.mu.
type Tracker struct {
	now                  func() time.Time
	epoch                time.Time
	defaultTimeout       time.Duration
	sweepInterval        time.Duration
	maxPending           int64
	maxPendingPerSession int

	pending atomic.Int64 // over all sessions, against maxPending

	mu  sync.Mutex
	due sessionHeap // sessions with pending calls, by Session.sched
}

// TrackerOpts configures a Tracker.
type TrackerOpts struct {
	// DefaultTimeout is the deadline of a call that does not carry its own;
	// DefaultCallTimeout when 0.
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
	// DefaultMaxPending and DefaultMaxPendingPerSession when 0.
	MaxPending           int
	MaxPendingPerSession int
}

// DefaultCallTimeout is TrackerOpts.DefaultTimeout's default.
const DefaultCallTimeout = 300 * time.Millisecond

// DefaultMaxPending and DefaultMaxPendingPerSession are the defaults of
// TrackerOpts.MaxPending and MaxPendingPerSession.
const (
	DefaultMaxPending           = 1_000_000
	DefaultMaxPendingPerSession = 10_000
)

// NewTracker returns a Tracker. Call Run to have deadlines enforced.
func NewTracker(opts TrackerOpts) (*Tracker, error) {
	if opts.DefaultTimeout == 0 {
		opts.DefaultTimeout = DefaultCallTimeout
	}
	if opts.DefaultTimeout < 0 {
		return nil, fmt.Errorf("tracker: default timeout must be positive, got %v", opts.DefaultTimeout)
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 10 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxPendingPerSession == 0 {
		opts.MaxPendingPerSession = DefaultMaxPendingPerSession
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
	}, nil
}

// Now is the tracker's clock: nanoseconds since the tracker started. A
// plain int64 keeps pending entries small and comparisons cheap. It is
// exported for callers that report many calls at one moment (the log path
// reads it once per socket read, not once per line, as the clock is a large
// part of handling a line) and pass it to StartAt and EndAt.
func (t *Tracker) Now() int64 { return int64(t.now().Sub(t.epoch)) }

// DefaultTimeout is the deadline of a call that carries no timeout of its
// own (TrackerOpts.DefaultTimeout). The log path gives it to the calls of a
// callee's view, whose deadline is only a backstop (see StartAt).
func (t *Tracker) DefaultTimeout() time.Duration { return t.defaultTimeout }

// Pending returns the number of calls pending over all sessions, which
// MaxPending bounds. Tests check that the families' calls_in_flight add
// up to it.
func (t *Tracker) Pending() int64 { return t.pending.Load() }

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
// It visits only the sessions whose earliest deadline is due (see
// Tracker). buf is reused for the list of those sessions to avoid an
// allocation per sweep; the (possibly grown) buffer is returned.
func (t *Tracker) Expire(buf []*Session) []*Session {
	now := t.Now()
	t.mu.Lock()
	for len(t.due) > 0 && t.due[0].sched < now {
		buf = append(buf, t.due.pop())
	}
	t.mu.Unlock()
	// A popped session is out of the heap until its expire reschedules
	// it; a call meanwhile sees its old, earlier key and leaves the heap
	// alone, which is right, as that expire reads the call's deadline.
	for _, s := range buf {
		s.expire(now)
	}
	clear(buf) // drop references to closed sessions
	return buf
}

// scheduled returns the number of sessions the sweeper has to look at.
func (t *Tracker) scheduled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.due)
}

// scheduleLocked sets the key of s in the heap of due sessions to at, or
// takes s out of it for noDeadline. The caller holds s.mu, so that a call
// cannot move the session's earliest deadline meanwhile.
func (t *Tracker) scheduleLocked(s *Session, at int64) {
	t.mu.Lock()
	s.sched = at
	switch {
	case at == noDeadline && s.dueIdx >= 0:
		t.due.remove(s.dueIdx)
	case at == noDeadline:
	case s.dueIdx >= 0:
		t.due.fix(s.dueIdx)
	default:
		t.due.push(s)
	}
	t.mu.Unlock()
}

// noDeadline is the key of a session with no deadline to wait for: no
// pending call, or only calls whose deadline saturated (never due).
const noDeadline = math.MaxInt64

// reserve takes a place for one pending call under MaxPending.
func (t *Tracker) reserve() bool {
	if t.pending.Add(1) > t.maxPending {
		t.pending.Add(-1)
		return false
	}
	return true
}

// Open starts a session whose calls are recorded in family. The tracker
// holds on to it only while it has calls pending.
func (t *Tracker) Open(family *Family) *Session {
	s := &Session{
		tracker: t,
		family:  family,
		calls:   make(map[uint64]pendingCall),
		sched:   noDeadline,
		dueIdx:  -1,
	}
	family.sessionOpened()
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

	// sched is the session's key in Tracker.due: no later than the
	// deadline of any pending call, or noDeadline. Written with both
	// s.mu and Tracker.mu held, so either lock suffices to read it.
	// After Expire pops the session it is stale (due) until the
	// session's expire sets it again.
	sched int64
	// dueIdx is the session's index in Tracker.due, or -1; Tracker.mu.
	dueIdx int
}

type pendingCall struct {
	series *procedureSeries // looked up once, when the call starts
	start  int64            // Tracker.Now
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
	now := s.tracker.Now()
	s.startAt(now, id, s.family.acquire(procedure, now), timeout, timeout > 0)
}

// StartAt is Call at now (Tracker.Now), for a procedure still in a read
// buffer: the log path starts its calls through it, without converting the
// procedure to a string (the lookup does not allocate) and with the clock
// read once for all the lines of one read. As for Call, a positive timeout
// is the dealer's to enforce, so the deadline is DealerBackstop after it,
// and timeout <= 0 means the tracker's default, enforced by the tracker.
func (s *Session) StartAt(now int64, id uint64, procedure []byte, timeout time.Duration) {
	s.startAt(now, id, s.family.acquireBytes(procedure, now), timeout, timeout > 0)
}

// startAt starts a call at now (Tracker.Now). A timeout <= 0 means the
// tracker's default. When byDealer, the timeout is the dealer's to enforce
// and the deadline is DealerBackstop after it; otherwise the deadline is
// the timeout.
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
		s.family.callUntracked()
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
	if deadline < s.sched { // rarely: most calls' deadlines come later
		s.tracker.scheduleLocked(s, deadline)
	}
	s.mu.Unlock()
	s.family.callStarted()
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
// that is a timeout, not an error. Either way the URI is counted in
// <prefix>_error_reasons_total.
func (s *Session) Error(id uint64, errorURI string) {
	s.ErrorAt(s.tracker.Now(), id, []byte(errorURI))
}

// ErrorAt is Error at now (Tracker.Now), for an error URI still in a read
// buffer (see StartAt).
func (s *Session) ErrorAt(now int64, id uint64, errorURI []byte) {
	if errorURI == nil {
		errorURI = []byte{} // counted, under OtherError
	}
	s.endAt(now, id, ErrorOutcome(errorURI), errorURI)
}

// Interrupt counts an INTERRUPT sent for call id, if it is pending, in
// <prefix>_interrupts_total (FamilyOpts.Interrupts). The call goes on: the
// callee still answers it, or its deadline ends it.
func (s *Session) Interrupt(id uint64) {
	s.mu.Lock()
	c, ok := s.calls[id]
	if ok && !s.closed {
		s.family.interrupted(c.series) // held by the pending call
	}
	s.mu.Unlock()
}

// ErrorOutcome is the outcome of a call answered by an ERROR with
// errorURI: wamp.error.timeout, which the dealer answers when it enforces
// the call's timeout option, is a timeout, anything else an error. It is
// generic so that the log path can pass a []byte from its read buffer
// without converting it.
func ErrorOutcome[T string | []byte](errorURI T) Outcome {
	if string(errorURI) == "wamp.error.timeout" {
		return Timeout
	}
	return Error
}

// Registered reports a registration of procedure by this session: its
// series exist from now on, with zero counts, and keep their slot while
// the registration lasts (until Unregistered or the session's end).
func (s *Session) Registered(procedure string) {
	series := s.family.register(procedure, s.tracker.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.registered) >= maxRegistrationsPerSession {
		s.family.unregister(series, s.tracker.Now()) // not held: the slot may go when idle
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
			s.family.unregister(r.series, s.tracker.Now())
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
	now := s.tracker.Now()
	for _, r := range s.registered {
		s.family.unregister(r.series, now)
	}
	s.registered = nil
}

// End ends call id with outcome. An answer after the deadline counts as a
// timeout of exactly the call's timeout, whether or not the sweeper got
// there first; an answer for a call that is not pending (never made,
// already answered or already timed out) is ignored.
func (s *Session) End(id uint64, outcome Outcome) { s.EndAt(s.tracker.Now(), id, outcome) }

// EndAt is End at now (Tracker.Now), for the log path's lines of one read
// (see StartAt).
func (s *Session) EndAt(now int64, id uint64, outcome Outcome) { s.endAt(now, id, outcome, nil) }

// endAt ends call id with outcome at now; errorURI is the URI of the
// ERROR that answered it, or nil for none.
func (s *Session) endAt(now int64, id uint64, outcome Outcome, errorURI []byte) {
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
	s.family.callEnded(c.series, outcome, time.Duration(elapsed), now, errorURI)
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
func (s *Session) Close() { s.CloseAt(s.tracker.Now()) }

// CloseAt is Close at now (Tracker.Now); it returns the number of calls
// dropped without an outcome, which the log path counts when it evicts a
// sender.
func (s *Session) CloseAt(now int64) (dropped int) {
	s.expire(now)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0
	}
	s.closed = true
	dropped = len(s.calls)
	for _, c := range s.calls {
		s.family.release(c.series)
	}
	s.calls = nil
	s.deadlines = nil
	s.releaseRegistrationsLocked()
	s.tracker.scheduleLocked(s, noDeadline)
	s.mu.Unlock()

	s.tracker.pending.Add(-int64(dropped))
	s.family.callsDropped(dropped)
	s.family.sessionClosed()
	return dropped
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
	s.releaseRegistrationsLocked()
	s.mu.Unlock()
	s.family.sessionClosed()
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
	// The earliest entry left may be an answered call's: a lower bound
	// is all the key needs to be. With no call left, the tracker lets go
	// of the session (an abandoned one is then forgotten for good).
	next := int64(noDeadline)
	if len(s.calls) > 0 && len(s.deadlines) > 0 {
		next = s.deadlines[0].deadline
	}
	s.tracker.scheduleLocked(s, next)
	s.mu.Unlock()
	s.tracker.pending.Add(-int64(len(ended)))
	for _, e := range ended {
		s.family.callEnded(e.series, Timeout, time.Duration(e.elapsed), now, nil)
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

// sessionHeap is a min-heap of sessions by Session.sched, each knowing its
// index (Session.dueIdx) so that its key can move. Tracker.mu guards it.
type sessionHeap []*Session

func (h *sessionHeap) push(s *Session) {
	s.dueIdx = len(*h)
	*h = append(*h, s)
	h.up(s.dueIdx)
}

func (h *sessionHeap) pop() *Session {
	top := (*h)[0]
	h.remove(0)
	return top
}

func (h *sessionHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	gone := old[i]
	if i != n {
		old[i] = old[n]
		old[i].dueIdx = i
	}
	old[n] = nil
	*h = old[:n]
	if i != n {
		h.fix(i)
	}
	gone.dueIdx = -1
}

// fix restores the order after h[i]'s key changed. When down moved it,
// up is a no-op: what rose to i came from below, where keys are no less
// than i's parent's.
func (h sessionHeap) fix(i int) {
	h.down(i)
	h.up(i)
}

func (h sessionHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].dueIdx = i
	h[j].dueIdx = j
}

func (h sessionHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].sched <= h[i].sched {
			return
		}
		h.swap(parent, i)
		i = parent
	}
}

func (h sessionHeap) down(i int) {
	n := len(h)
	for {
		smallest, l, r := i, 2*i+1, 2*i+2
		if l < n && h[l].sched < h[smallest].sched {
			smallest = l
		}
		if r < n && h[r].sched < h[smallest].sched {
			smallest = r
		}
		if smallest == i {
			return
		}
		h.swap(smallest, i)
		i = smallest
	}
}
