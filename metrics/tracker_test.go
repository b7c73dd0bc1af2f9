package metrics

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

type fixture struct {
	reg     *prometheus.Registry
	family  *Family
	tracker *Tracker
	clock   *testkit.FakeClock
}

func newFixture(t *testing.T, maxProcedures int) *fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	family, err := NewFamily(reg, FamilyOpts{Prefix: "wamp_router", MaxProcedures: maxProcedures})
	if err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	tracker, err := NewTracker(TrackerOpts{DefaultTimeout: 300 * time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{reg: reg, family: family, tracker: tracker, clock: clock}
}

// summary returns count and sum of <prefix>_<outcome>_seconds{message=procedure},
// and whether the series exists.
func (f *fixture) summary(t *testing.T, outcome Outcome, procedure string) (count uint64, sum float64, ok bool) {
	t.Helper()
	m := f.metric(t, "wamp_router_"+outcome.String()+"_seconds", procedure)
	if m == nil {
		return 0, 0, false
	}
	return m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum(), true
}

func (f *fixture) metric(t *testing.T, name, procedure string) *dto.Metric {
	t.Helper()
	if procedure == "" {
		return testkit.FindMetric(t, f.reg, name)
	}
	return testkit.FindMetric(t, f.reg, name, "message", procedure)
}

func (f *fixture) histogramCount(t *testing.T, outcome Outcome) uint64 {
	t.Helper()
	m := f.metric(t, "wamp_router_"+outcome.String()+"_total_seconds", "")
	if m == nil {
		t.Fatalf("no histogram for %v", outcome)
	}
	return m.GetHistogram().GetSampleCount()
}

func (f *fixture) expectCall(t *testing.T, outcome Outcome, procedure string, wantCount uint64, wantSum time.Duration) {
	t.Helper()
	count, sum, ok := f.summary(t, outcome, procedure)
	if !ok {
		t.Fatalf("%s %v: no series", procedure, outcome)
	}
	if count != wantCount {
		t.Errorf("%s %v: count %d, want %d", procedure, outcome, count, wantCount)
	}
	if diff := sum - wantSum.Seconds(); diff > 1e-9 || diff < -1e-9 {
		t.Errorf("%s %v: sum %gs, want %gs", procedure, outcome, sum, wantSum.Seconds())
	}
}

func TestResultIsAResponseTimedFromCallToAnswer(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "hello1", 0)
	f.clock.Advance(7 * time.Millisecond)
	s.Result(1)
	f.expectCall(t, Response, "hello1", 1, 7*time.Millisecond)
	f.expectCall(t, Error, "hello1", 0, 0)
	f.expectCall(t, Timeout, "hello1", 0, 0)
	if got := f.histogramCount(t, Response); got != 1 {
		t.Errorf("responses histogram count %d, want 1", got)
	}
	if got := testutil.ToFloat64(f.family.inFlight); got != 0 {
		t.Errorf("calls in flight %v, want 0", got)
	}
}

func TestErrorsAndDealerTimeouts(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "hello2", 0)
	s.Call(2, "hello2", 0)
	s.Call(3, "hello2", 0)
	f.clock.Advance(20 * time.Millisecond)
	s.Error(1, "app.error.failed")
	s.Error(2, "wamp.error.no_such_procedure")
	s.Error(3, "wamp.error.timeout") // the dealer enforcing a CALL timeout option
	f.expectCall(t, Error, "hello2", 2, 40*time.Millisecond)
	f.expectCall(t, Timeout, "hello2", 1, 20*time.Millisecond)
}

func TestUnansweredCallTimesOutAtItsDeadlineAndLateAnswerIsIgnored(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "hello3", 0)
	f.clock.Advance(299 * time.Millisecond)
	f.tracker.Expire(nil)
	f.expectCall(t, Timeout, "hello3", 0, 0)

	f.clock.Advance(50 * time.Millisecond) // the sweep runs late
	f.tracker.Expire(nil)
	// Recorded as the deadline, not the sweep's lateness.
	f.expectCall(t, Timeout, "hello3", 1, 300*time.Millisecond)

	s.Result(1) // the answer after the timeout
	f.expectCall(t, Response, "hello3", 0, 0)
	f.expectCall(t, Timeout, "hello3", 1, 300*time.Millisecond)
	if got := s.Pending(); got != 0 {
		t.Errorf("pending %d, want 0", got)
	}
}

func TestAnswerPastDeadlineBeforeSweepIsATimeout(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "hello4", 0)
	f.clock.Advance(305 * time.Millisecond)
	s.Result(1) // the sweeper has not run yet
	f.expectCall(t, Timeout, "hello4", 1, 300*time.Millisecond)
	f.expectCall(t, Response, "hello4", 0, 0)
}

// With a timeout option the dealer enforces it, so what the caller
// receives decides: a RESULT a hair past the option (the dealer's timer
// started after the observer saw the CALL) is a response, and
// wamp.error.timeout a timeout timed as it happened.
func TestDealerEnforcedTimeoutTheAnswerDecides(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "edge", 50*time.Millisecond)
	s.Call(2, "edge", 50*time.Millisecond)
	s.Call(3, "long", 2*time.Second)
	f.clock.Advance(51 * time.Millisecond)
	f.tracker.Expire(nil)
	s.Result(1)
	f.expectCall(t, Response, "edge", 1, 51*time.Millisecond)
	f.clock.Advance(time.Millisecond)
	s.Error(2, "wamp.error.timeout")
	f.expectCall(t, Timeout, "edge", 1, 52*time.Millisecond)
	f.clock.Advance(400*time.Millisecond - 52*time.Millisecond) // past the default 300ms
	f.tracker.Expire(nil)
	s.Result(3)
	f.expectCall(t, Response, "long", 1, 400*time.Millisecond)
}

// A dealer that never answers a call with a timeout option (or a log
// sender that went away) leaves it pending only until DealerBackstop after
// the option; it is then a timeout of the option's length.
func TestDealerEnforcedTimeoutHasABackstop(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "lost", 50*time.Millisecond)
	f.clock.Advance(50*time.Millisecond + DealerBackstop)
	f.tracker.Expire(nil)
	f.expectCall(t, Timeout, "lost", 0, 0)
	f.clock.Advance(time.Millisecond)
	f.tracker.Expire(nil)
	f.expectCall(t, Timeout, "lost", 1, 50*time.Millisecond)
	if got := s.Pending(); got != 0 {
		t.Errorf("pending %d, want 0", got)
	}
}

// startStrict starts a call whose deadline the tracker enforces itself,
// as for a logged INVOCATION's timeout.
func startStrict(s *Session, id uint64, procedure string, timeout time.Duration) {
	now := s.tracker.Now()
	s.startAt(now, id, s.family.acquire(procedure, now), timeout, false)
}

// A caller that leaves just after a deadline waited in vain: the call is
// a timeout even though the sweeper had not run. Just before the deadline,
// leaving drops the call without an outcome.
func TestCloseJustAfterTheDeadlineIsATimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    time.Duration
		timeouts uint64
	}{
		{"just after", 300*time.Millisecond + 2*time.Millisecond, 1},
		{"just before", 300*time.Millisecond - 2*time.Millisecond, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 10)
			s := f.tracker.Open(f.family)
			s.Call(1, "leaver", 0)
			f.clock.Advance(tc.after)
			s.Close()
			var wantSum time.Duration
			if tc.timeouts > 0 {
				wantSum = 300 * time.Millisecond
			}
			f.expectCall(t, Timeout, "leaver", tc.timeouts, wantSum)
			f.clock.Advance(time.Second)
			f.tracker.Expire(nil)
			f.expectCall(t, Timeout, "leaver", tc.timeouts, wantSum)
			if got := testutil.ToFloat64(f.family.inFlight); got != 0 {
				t.Errorf("calls in flight %v, want 0", got)
			}
		})
	}
}

// A log sender that went away made its calls: they end as timeouts at
// their deadlines, and the tracker then forgets the session.
func TestAbandonedSessionTimesOutItsCalls(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Call(1, "orphan", 0)
	s.Call(2, "orphan", 0)
	f.clock.Advance(100 * time.Millisecond)
	s.Result(1)
	s.Abandon()
	s.Result(2) // nothing is accepted once abandoned
	s.Call(3, "orphan", 0)
	if got := testutil.ToFloat64(f.family.sessions); got != 0 {
		t.Errorf("sessions %v, want 0", got)
	}
	if got := testutil.ToFloat64(f.family.inFlight); got != 1 {
		t.Errorf("calls in flight %v, want 1", got)
	}
	f.clock.Advance(201 * time.Millisecond)
	f.tracker.Expire(nil)
	f.expectCall(t, Timeout, "orphan", 1, 300*time.Millisecond)
	f.expectCall(t, Response, "orphan", 1, 100*time.Millisecond)
	if n := f.tracker.scheduled(); n != 0 {
		t.Errorf("tracker holds %d sessions, want 0", n)
	}
}

func TestClosedSessionDropsPendingCallsWithoutOutcome(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	other := f.tracker.Open(f.family)
	if got := testutil.ToFloat64(f.family.sessions); got != 2 {
		t.Fatalf("sessions %v, want 2", got)
	}
	s.Call(1, "hello5", 0)
	s.Call(2, "hello5", 0)
	other.Call(1, "hello5", 0) // same id, other session: no collision
	if got := testutil.ToFloat64(f.family.inFlight); got != 3 {
		t.Fatalf("calls in flight %v, want 3", got)
	}
	s.Close()
	s.Close() // idempotent
	if n := f.tracker.scheduled(); n != 1 {
		t.Errorf("tracker holds %d sessions, want 1 (the other one)", n)
	}
	f.clock.Advance(time.Second)
	f.tracker.Expire(nil)
	s.Result(1)
	s.Call(3, "hello5", 0) // after close: ignored
	f.expectCall(t, Timeout, "hello5", 1, 300*time.Millisecond)
	f.expectCall(t, Response, "hello5", 0, 0)
	if got := testutil.ToFloat64(f.family.inFlight); got != 0 {
		t.Errorf("calls in flight %v, want 0", got)
	}
	if got := testutil.ToFloat64(f.family.sessions); got != 1 {
		t.Errorf("sessions %v, want 1", got)
	}
	if n := f.tracker.scheduled(); n != 0 {
		t.Errorf("tracker holds %d sessions, want 0: none has a call pending", n)
	}
}

func TestDuplicateAndUnknownIDs(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Result(42) // an answer for a call never made
	s.Error(43, "app.error")
	s.Call(1, "hello6", 0)
	f.clock.Advance(5 * time.Millisecond)
	s.Call(1, "hello6", 0) // same id while pending: the first start counts
	f.clock.Advance(5 * time.Millisecond)
	s.Result(1)
	s.Result(1) // answered twice
	f.expectCall(t, Response, "hello6", 1, 10*time.Millisecond)
	f.expectCall(t, Error, "hello6", 0, 0)
}

func TestRegisteredProcedureHasZeroSeries(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	s.Registered("hello7")
	for o := Outcome(0); o < numOutcomes; o++ {
		f.expectCall(t, o, "hello7", 0, 0)
	}
}

func TestProceduresBeyondTheBoundAreRecordedAsOther(t *testing.T) {
	f := newFixture(t, 2)
	s := f.tracker.Open(f.family)
	s.Registered("a")
	for i, p := range []string{"a", "b", "c", "d", "c"} {
		s.Call(uint64(i), p, 0)
		s.Result(uint64(i))
	}
	f.expectCall(t, Response, "a", 1, 0)
	f.expectCall(t, Response, "b", 1, 0)
	f.expectCall(t, Response, OtherProcedure, 3, 0)
	if _, _, ok := f.summary(t, Response, "c"); ok {
		t.Error(`"c" has its own series beyond the bound`)
	}
	if got := testutil.ToFloat64(f.family.otherCalls); got != 3 {
		t.Errorf("other calls %v, want 3", got)
	}
}

// A procedure really named "other" is not the overflow: once the bound is
// reached, its calls stay apart from those recorded as overflow.
func TestAProcedureNamedOtherIsNotTheOverflow(t *testing.T) {
	f := newFixture(t, 1)
	s := f.tracker.Open(f.family)
	for i, p := range []string{"other", "b", "other", "c", OtherProcedure} {
		s.Call(uint64(i), p, 0)
		s.Result(uint64(i))
	}
	f.expectCall(t, Response, "other", 2, 0)
	f.expectCall(t, Response, OtherProcedure, 3, 0)
	if got := testutil.ToFloat64(f.family.otherCalls); got != 3 {
		t.Errorf("other calls %v, want 3", got)
	}
}

func TestDeadlineHeapStaysBoundedWithLongTimeouts(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	for i := range uint64(100_000) {
		s.Call(i, "fast", time.Hour)
		s.Result(i)
	}
	s.mu.Lock()
	n := len(s.deadlines)
	s.mu.Unlock()
	if n > 64 {
		t.Errorf("deadline heap holds %d entries for 0 pending calls", n)
	}
	f.expectCall(t, Response, "fast", 100_000, 0)
}

// A sweep visits only the sessions with a call due, however many others
// wait: 10,000 sessions with a call a minute out cost nothing to sweep
// (Expire hands back the sessions it visited in its buffer). Calls with a
// short deadline, in sessions of their own and among the idle ones, time
// out exactly; a call that moves its session's deadline earlier is
// honoured; answered calls' sessions are visited at most once more.
func TestExpireVisitsOnlySessionsWithACallDue(t *testing.T) {
	f := newFixture(t, 10)
	const idle = 10_000
	idlers := make([]*Session, idle)
	for i := range idlers {
		idlers[i] = f.tracker.Open(f.family)
		idlers[i].Call(1, "slow", time.Minute)
	}
	busy := f.tracker.Open(f.family)
	busy.Call(1, "fast", 0)      // 300ms
	busy.Call(2, "fast", 0)      // answered below
	idlers[7].Call(2, "fast", 0) // earlier than that session's minute
	f.clock.Advance(10 * time.Millisecond)
	if visited := len(f.tracker.Expire(nil)); visited != 0 {
		t.Errorf("a sweep with nothing due visited %d sessions, want 0", visited)
	}
	busy.Result(2)
	f.clock.Advance(291 * time.Millisecond)
	if visited := len(f.tracker.Expire(nil)); visited != 2 {
		t.Errorf("a sweep with 2 sessions due visited %d, want 2", visited)
	}
	f.expectCall(t, Timeout, "fast", 2, 600*time.Millisecond)
	f.expectCall(t, Response, "fast", 1, 10*time.Millisecond)
	f.expectCall(t, Timeout, "slow", 0, 0)
	if n := f.tracker.scheduled(); n != idle {
		t.Errorf("tracker holds %d sessions, want the %d with a call pending", n, idle)
	}
	f.clock.Advance(time.Minute + DealerBackstop) // a timeout option's backstop
	if visited := len(f.tracker.Expire(nil)); visited != idle {
		t.Errorf("the minute's sweep visited %d sessions, want %d", visited, idle)
	}
	f.expectCall(t, Timeout, "slow", idle, idle*time.Minute)
	if n := f.tracker.scheduled(); n != 0 {
		t.Errorf("tracker holds %d sessions, want 0", n)
	}
	if got := testutil.ToFloat64(f.family.inFlight); got != 0 {
		t.Errorf("calls in flight %v, want 0", got)
	}
}

func TestExpireEndsCallsInDeadlineOrder(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	// Deadlines 10ms..100ms pushed in scrambled order.
	for _, ms := range []int{70, 10, 100, 40, 20, 90, 30, 60, 50, 80} {
		startStrict(s, uint64(ms), "p", time.Duration(ms)*time.Millisecond)
	}
	for step := 1; step <= 10; step++ {
		f.clock.Advance(10*time.Millisecond + time.Microsecond)
		f.tracker.Expire(nil)
		count, _, _ := f.summary(t, Timeout, "p")
		if count != uint64(step) {
			t.Fatalf("after %dms: %d timeouts, want %d", step*10, count, step)
		}
	}
}

// TestRunSweepsOnItsOwn runs the real sweeper loop in a synctest bubble,
// whose clock only moves when every goroutine in it is blocked.
func TestRunSweepsOnItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		family, err := NewFamily(reg, FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10})
		if err != nil {
			t.Fatal(err)
		}
		tracker, err := NewTracker(TrackerOpts{DefaultTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { tracker.Run(ctx); close(done) }()

		s := tracker.Open(family)
		s.Call(1, "hello9", 0)
		time.Sleep(299 * time.Millisecond)
		synctest.Wait()
		if got := testutil.ToFloat64(family.inFlight); got != 1 {
			t.Fatalf("in flight before the deadline: %v, want 1", got)
		}
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if got := testutil.ToFloat64(family.inFlight); got != 0 {
			t.Fatalf("in flight after the deadline: %v, want 0", got)
		}
		const want = `
# HELP wamp_router_timeouts_seconds A summary of the wamp router timeouts.
# TYPE wamp_router_timeouts_seconds summary
wamp_router_timeouts_seconds_sum{message="hello9"} 0.3
wamp_router_timeouts_seconds_count{message="hello9"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wamp_router_timeouts_seconds"); err != nil {
			t.Error(err)
		}
		cancel()
		<-done
	})
}

func TestFamilyHelpAndLint(t *testing.T) {
	f := newFixture(t, 10)
	f.family.Declare("hello1", 0)
	problems, err := testutil.GatherAndLint(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	const want = `
# HELP wamp_router_errors_total_seconds A histogram of the wamp router errors.
# TYPE wamp_router_errors_total_seconds histogram
wamp_router_errors_total_seconds_bucket{le="0.005"} 0
wamp_router_errors_total_seconds_bucket{le="0.01"} 0
wamp_router_errors_total_seconds_bucket{le="0.025"} 0
wamp_router_errors_total_seconds_bucket{le="0.05"} 0
wamp_router_errors_total_seconds_bucket{le="0.1"} 0
wamp_router_errors_total_seconds_bucket{le="0.25"} 0
wamp_router_errors_total_seconds_bucket{le="0.5"} 0
wamp_router_errors_total_seconds_bucket{le="1"} 0
wamp_router_errors_total_seconds_bucket{le="2.5"} 0
wamp_router_errors_total_seconds_bucket{le="5"} 0
wamp_router_errors_total_seconds_bucket{le="10"} 0
wamp_router_errors_total_seconds_bucket{le="+Inf"} 0
wamp_router_errors_total_seconds_sum 0
wamp_router_errors_total_seconds_count 0
# HELP wamp_router_responses_seconds A summary of the wamp router responses.
# TYPE wamp_router_responses_seconds summary
wamp_router_responses_seconds_sum{message="hello1"} 0
wamp_router_responses_seconds_count{message="hello1"} 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want),
		"wamp_router_errors_total_seconds", "wamp_router_responses_seconds"); err != nil {
		t.Error(err)
	}
}

func TestPendingLimitsLeaveNewCallsUntracked(t *testing.T) {
	reg := prometheus.NewRegistry()
	family, err := NewFamily(reg, FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10})
	if err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	tracker, err := NewTracker(TrackerOpts{DefaultTimeout: time.Second, Now: clock.Now, MaxPending: 5, MaxPendingPerSession: 3})
	if err != nil {
		t.Fatal(err)
	}
	a, b := tracker.Open(family), tracker.Open(family)
	for id := range uint64(4) {
		a.Call(id, "p", 0) // the fourth is over the per-session limit
	}
	for id := range uint64(3) {
		b.Call(id, "p", 0) // the third is over the total limit
	}
	if a.Pending() != 3 || b.Pending() != 2 {
		t.Fatalf("pending %d and %d, want 3 and 2", a.Pending(), b.Pending())
	}
	if got := testutil.ToFloat64(family.untracked); got != 2 {
		t.Errorf("untracked %v, want 2", got)
	}
	a.Result(3) // the untracked call's answer is ignored
	a.Result(0) // a place frees up
	b.Call(9, "p", 0)
	if b.Pending() != 3 {
		t.Errorf("a freed place was not reused: %d pending", b.Pending())
	}
	a.Close()
	clock.Advance(2 * time.Second)
	tracker.Expire(nil)
	if got := tracker.pending.Load(); got != 0 {
		t.Errorf("tracker holds %d pending calls after close and expiry", got)
	}
	count, _, _ := (&fixture{reg: reg}).summary(t, Response, "p")
	if count != 1 {
		t.Errorf("%d responses, want 1", count)
	}
}

// newFamilyFixture is newFixture with the family's options given.
func newFamilyFixture(t *testing.T, opts FamilyOpts) *fixture {
	t.Helper()
	f := newFixture(t, 1)
	f.reg = prometheus.NewRegistry()
	opts.Prefix = "wamp_router"
	family, err := NewFamily(f.reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.family = family
	return f
}

// A procedure longer than the bound is recorded under the overflow value
// and takes no slot, so that the scrape has a worst-case size.
func TestLongProceduresAreRecordedAsOverflow(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 2, MaxProcedureLen: 16})
	s := f.tracker.Open(f.family)
	long := strings.Repeat("x", 1<<20)
	s.Registered(long)
	for i, p := range []string{long, long[:17], "hello1", long[:16]} {
		s.Call(uint64(i), p, 0)
		s.Result(uint64(i))
	}
	f.expectCall(t, Response, OtherProcedure, 2, 0)
	f.expectCall(t, Response, "hello1", 1, 0)
	f.expectCall(t, Response, long[:16], 1, 0)
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if len(l.GetValue()) > 18 { // OtherProcedure is 18 bytes
					t.Errorf("%s has a %d-byte label value", mf.GetName(), len(l.GetValue()))
				}
			}
		}
	}
}

// Made-up procedures that fill every slot give their slots back once idle
// for ProcedureIdle: the attack wears off. A procedure with a call pending
// or a registration held keeps its slot however long it is quiet.
func TestIdleProceduresGiveBackTheirSlots(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 4, ProcedureIdle: time.Minute})
	attacker := f.tracker.Open(f.family)
	callee := f.tracker.Open(f.family)
	callee.Registered("registered")
	attacker.Call(1, "pending", 10*time.Minute)
	for i, p := range []string{"made.up.1", "made.up.2"} {
		attacker.Call(uint64(10+i), p, 0)
		attacker.Result(uint64(10 + i))
	}
	s := f.tracker.Open(f.family)
	s.Call(1, "real", 0)
	s.Result(1)
	f.expectCall(t, Response, OtherProcedure, 1, 0) // the slots are taken

	f.clock.Advance(time.Minute + time.Second)
	s.Call(2, "real", 0)
	s.Result(2)
	f.expectCall(t, Response, "real", 1, 0)
	for _, gone := range []string{"made.up.1", "made.up.2"} {
		if _, _, ok := f.summary(t, Response, gone); ok {
			t.Errorf("%s still has its series", gone)
		}
	}
	for _, kept := range []string{"registered", "pending"} {
		if _, _, ok := f.summary(t, Response, kept); !ok {
			t.Errorf("%s lost its series", kept)
		}
	}
	attacker.Result(1) // the pending call is recorded where it started
	f.expectCall(t, Response, "pending", 1, time.Minute+time.Second)

	// Once the callee leaves, its registration no longer holds the slot.
	callee.Close()
	s.Call(3, "filler", 0) // the last free slot
	s.Result(3)
	f.clock.Advance(time.Minute + time.Second)
	s.Call(4, "another", 0)
	s.Result(4)
	f.expectCall(t, Response, "another", 1, 0)
	if _, _, ok := f.summary(t, Response, "registered"); ok {
		t.Error("registered kept its series after the callee left")
	}
}

// Calls and reclaims racing: every call is recorded exactly once, in the
// series of its procedure or the overflow.
func TestReclaimRacingCallsLosesNothing(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 3, ProcedureIdle: time.Nanosecond})
	const workers, calls = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			s := f.tracker.Open(f.family)
			defer s.Close()
			for i := range calls {
				s.Call(uint64(i), fmt.Sprintf("p%d", (w*calls+i)%7), 0)
				f.clock.Advance(time.Millisecond)
				s.Result(uint64(i))
			}
		})
	}
	wg.Wait()
	// (A worker preempted between CALL and RESULT while the others move
	// the clock may see a timeout: either way, one outcome per call.)
	if got := f.histogramCount(t, Response) + f.histogramCount(t, Timeout); got != workers*calls {
		t.Fatalf("histograms hold %d calls, want %d", got, workers*calls)
	}
	// The summaries of reclaimed procedures left the scrape with their
	// counts; those still there are consistent and nothing is pending.
	for p := range 7 {
		if c, _, ok := f.summary(t, Error, fmt.Sprintf("p%d", p)); ok && c != 0 {
			t.Errorf("p%d has %d errors", p, c)
		}
	}
	if got := testutil.ToFloat64(f.family.inFlight); got != 0 {
		t.Errorf("calls in flight %v, want 0", got)
	}
}

// TestTotalsAreWhatTheFamilyRecorded: the counts the program logs on its
// way out are the histograms' counts, per outcome, and the sessions open.
func TestTotalsAreWhatTheFamilyRecorded(t *testing.T) {
	f := newFixture(t, 10)
	if got := f.family.Name(); got != "wamp_router" {
		t.Errorf("name %q, want wamp_router", got)
	}
	s := f.tracker.Open(f.family)
	f.tracker.Open(f.family)
	s.Call(1, "p", 0)
	s.Call(2, "p", 0)
	s.Call(3, "q", 0)
	s.Call(4, "q", 0)
	f.clock.Advance(100 * time.Millisecond)
	s.Result(1)
	s.Error(2, "app.error")
	s.Error(3, "wamp.error.timeout")
	got := f.family.Totals()
	want := Totals{Calls: [numOutcomes]uint64{Response: 1, Error: 1, Timeout: 1}, Sessions: 2}
	if got.Calls != want.Calls || got.Sessions != want.Sessions {
		t.Errorf("totals %+v, want %+v", got, want)
	}
	if got.Seconds[Response] != 0.1 {
		t.Errorf("responses took %v s, want 0.1", got.Seconds[Response])
	}
	if got := f.family.Pending(); got != 1 {
		t.Errorf("pending %d, want 1", got)
	}
}
