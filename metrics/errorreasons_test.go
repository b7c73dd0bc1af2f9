package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// errorCount is <prefix>_error_reasons_total{message=procedure, error=uri},
// and whether the series exists.
func (f *fixture) errorCount(t *testing.T, procedure, uri string) (float64, bool) {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, "wamp_router_error_reasons_total", "message", procedure, "error", uri)
	if m == nil {
		return 0, false
	}
	return m.GetCounter().GetValue(), true
}

// Every ERROR answering a pending call counts under its procedure and URI,
// wamp.error.timeout too (a timeout outcome, but an ERROR the caller got);
// answers to calls not pending, and calls that time out unanswered, do not.
func TestErrorReasonsCountEveryErrorAnswerByURI(t *testing.T) {
	f := newFixture(t, 10)
	s := f.tracker.Open(f.family)
	plan := []struct {
		procedure, uri string
	}{
		{"com.a", "app.error.invalid"},
		{"com.a", "app.error.invalid"},
		{"com.a", "wamp.error.timeout"},
		{"com.b", "app.error.invalid"},
		{"com.b", "wamp.error.canceled"},
	}
	for i, p := range plan {
		s.Call(uint64(i), p.procedure, time.Second)
		s.Error(uint64(i), p.uri)
	}
	s.Error(99, "app.error.never_called") // not pending: ignored
	s.Call(100, "com.a", 0)
	f.clock.Advance(time.Second)
	f.tracker.Expire(nil) // a timeout without an ERROR

	want := map[[2]string]float64{
		{"com.a", "app.error.invalid"}:   2,
		{"com.a", "wamp.error.timeout"}:  1,
		{"com.b", "app.error.invalid"}:   1,
		{"com.b", "wamp.error.canceled"}: 1,
	}
	for k, n := range want {
		if got, _ := f.errorCount(t, k[0], k[1]); got != n {
			t.Errorf("%s %s: %v, want %v", k[0], k[1], got, n)
		}
	}
	if _, ok := f.errorCount(t, "com.a", "app.error.never_called"); ok {
		t.Error("an ERROR for a call never made was counted")
	}
	f.expectCall(t, Timeout, "com.a", 2, 300*time.Millisecond)
}

// Error URIs come from clients: beyond the distinct URIs or the series
// allowed, and for empty or too long URIs, ERRORs count under OtherError,
// so the family's size has a bound whatever callees answer.
func TestErrorReasonsAreBoundedAndOverflowToOther(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 10, MaxProcedureLen: 32, MaxErrorURIs: 3, MaxErrorSeries: 4})
	answer := f.errorAnswerer()
	for _, uri := range []string{"e.1", "e.2", "e.3", "e.4", "", strings.Repeat("x", 33), OtherError} {
		answer("p.1", uri)
	}
	answer("p.2", "e.1") // a known URI, a fourth series
	answer("p.2", "e.2") // a fifth series: over the series bound
	for _, c := range []struct {
		procedure, uri string
		want           float64
	}{
		{"p.1", "e.1", 1}, {"p.1", "e.2", 1}, {"p.1", "e.3", 1}, {"p.1", OtherError, 4},
		{"p.2", "e.1", 1}, {"p.2", OtherError, 1},
	} {
		if got, ok := f.errorCount(t, c.procedure, c.uri); !ok || got != c.want {
			t.Errorf("%s %q: %v (exists %v), want %v", c.procedure, c.uri, got, ok, c.want)
		}
	}
	if _, ok := f.errorCount(t, "p.1", "e.4"); ok {
		t.Error("a URI beyond the bound has a series")
	}
	if n := f.seriesOf(t, "wamp_router_error_reasons_total"); n != 6 {
		t.Errorf("%d error reason series, want 6 (4 plus one overflow per procedure)", n)
	}
}

// A procedure reclaimed for being idle takes its error series with it, and
// the URIs only it used give back their places: made-up error URIs wear
// off as made-up procedures do.
func TestErrorReasonsOfAReclaimedProcedureGiveBackTheirPlaces(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 1, ProcedureIdle: time.Minute, MaxErrorURIs: 1})
	s := f.tracker.Open(f.family)
	s.Call(1, "made.up", 0)
	s.Error(1, "made.up.error")
	f.clock.Advance(time.Minute + time.Second)
	s.Call(2, "real", 0)
	s.Error(2, "real.error")
	if _, ok := f.errorCount(t, "made.up", "made.up.error"); ok {
		t.Error("the reclaimed procedure's error series is still there")
	}
	if got, ok := f.errorCount(t, "real", "real.error"); !ok || got != 1 {
		t.Errorf("real.error: %v (exists %v), want 1: its place was not given back", got, ok)
	}
}

// An INTERRUPT counts under the procedure of its pending call, in a family
// that has interrupts; it does not end the call.
func TestInterruptsCountUnderTheirProcedure(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 10, Interrupts: true})
	s := f.tracker.Open(f.family)
	s.Call(1, "slow", time.Second)
	s.Interrupt(1)
	s.Interrupt(2) // not pending
	s.Error(1, "wamp.error.canceled")
	s.Interrupt(1) // answered already
	m := testkit.FindMetric(t, f.reg, "wamp_router_interrupts_total", "message", "slow")
	if m.GetCounter().GetValue() != 1 {
		t.Errorf("interrupts %v, want 1", m.GetCounter().GetValue())
	}
	f.expectCall(t, Error, "slow", 1, 0)
	if f.seriesOf(t, "wamp_router_interrupts_total") != 1 {
		t.Error("an interrupt for no pending call made a series")
	}
}

// errorAnswerer returns a function that makes one call on a session of
// its own and answers it with an ERROR.
func (f *fixture) errorAnswerer() func(procedure, uri string) {
	s := f.tracker.Open(f.family)
	id := uint64(0)
	return func(procedure, uri string) {
		id++
		s.Call(id, procedure, 0)
		s.Error(id, uri)
	}
}

// seriesOf is the number of series of the family name.
func (f *fixture) seriesOf(t *testing.T, name string) int {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// One procedure holds at most MaxErrorURIsPerProcedure URIs of its own, so
// a callee answering with made-up URIs cannot take every place of the
// family; the spec's URIs take no place at all and keep their series
// whatever clients' URIs fill.
func TestErrorReasonsOfOneProcedureCannotTakeEveryPlace(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 10, MaxErrorURIs: 12})
	answer := f.errorAnswerer()
	for i := range MaxErrorURIsPerProcedure + 3 {
		answer("hostile", fmt.Sprintf("made.up.%d", i))
	}
	answer("hostile", "wamp.error.canceled") // the spec's: a series of its own still
	for i := range 3 {
		answer("real", fmt.Sprintf("real.error.%d", i)) // places left: 12 - 10
	}
	answer("real", "wamp.error.no_such_procedure")
	for _, c := range []struct {
		procedure, uri string
		want           float64
	}{
		{"hostile", "made.up.9", 1}, {"hostile", OtherError, 3}, {"hostile", "wamp.error.canceled", 1},
		{"real", "real.error.0", 1}, {"real", "real.error.1", 1}, {"real", OtherError, 1},
		{"real", "wamp.error.no_such_procedure", 1},
	} {
		if got, ok := f.errorCount(t, c.procedure, c.uri); !ok || got != c.want {
			t.Errorf("%s %q: %v (exists %v), want %v", c.procedure, c.uri, got, ok, c.want)
		}
	}
}

// A URI over the length bound only once made valid UTF-8 (each invalid
// byte becomes three) counts under the overflow: no label value is longer
// than the bound.
func TestErrorReasonsBoundTheLabelNotTheRawURI(t *testing.T) {
	f := newFamilyFixture(t, FamilyOpts{MaxProcedures: 10, MaxProcedureLen: 16})
	s := f.tracker.Open(f.family)
	s.Call(1, "p", 0)
	s.Error(1, strings.Repeat("\xffa", 8)) // 16 bytes; 32 as a label
	if got, _ := f.errorCount(t, "p", OtherError); got != 1 {
		t.Errorf("overflow %v, want 1", got)
	}
}
