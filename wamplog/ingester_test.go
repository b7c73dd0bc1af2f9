package wamplog

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/wampcall"
)

// ingestFixture is an ingester and one UDP reader on a fake clock, driven
// line by line without a socket.
type ingestFixture struct {
	reg     *prometheus.Registry
	clock   *testkit.FakeClock
	tracker *metrics.Tracker
	in      *Ingester
	r       *Reader
}

func newIngestFixture(t *testing.T, opts IngesterOpts) *ingestFixture {
	t.Helper()
	f := &ingestFixture{reg: prometheus.NewRegistry(), clock: testkit.NewFakeClock(time.Unix(1_700_000_000, 0))}
	var err error
	if f.tracker, err = metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: 300 * time.Millisecond, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	opts.Tracker, opts.Logger = f.tracker, testkit.QuietLog()
	if opts.MaxProcedures == 0 {
		opts.MaxProcedures = 100
	}
	if f.in, err = NewIngester(f.reg, opts); err != nil {
		t.Fatal(err)
	}
	f.r = f.in.NewReader("udp")
	t.Cleanup(f.r.Close)
	return f
}

func (f *ingestFixture) line(from netip.AddrPort, msg string) {
	f.r.HandleLine(from, []byte(testkit.LogLine("php", "out", msg)))
}

// count is the count of php_out_<outcome>_seconds{message=procedure}.
func (f *ingestFixture) count(t *testing.T, outcome metrics.Outcome, procedure string) uint64 {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, "php_out_"+outcome.String()+"_seconds", "message", procedure)
	if m == nil {
		return 0
	}
	return m.GetSummary().GetSampleCount()
}

func (f *ingestFixture) sum(t *testing.T, outcome metrics.Outcome, procedure string) float64 {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, "php_out_"+outcome.String()+"_seconds", "message", procedure)
	if m == nil {
		return 0
	}
	return m.GetSummary().GetSampleSum()
}

// value is the value of a counter or gauge without labels; 0 when absent.
func (f *ingestFixture) value(t *testing.T, name string) float64 {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, name)
	switch {
	case m == nil:
		return 0
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

func sender(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
}

// One CALL with a 10^12 ms timeout from each of 10,000 source addresses
// used to take every place in the sender table for good. Now a new sender
// takes the place of the one seen least recently: a sender that keeps
// logging is never evicted and its calls count exactly, senders arriving
// after the flood are served, and every attacker call ends exactly once:
// dropped (evicted before its deadline) or a timeout of the capped minute.
func TestSenderFloodLocksNoSenderOut(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	const attackers, extra = 10_000, 500 // extra: past the table's 10,000
	steady := netip.MustParseAddrPort("127.0.0.1:50000")
	id, steadyCalls := 0, 0
	for i := range attackers + extra {
		f.line(sender(i), `[48,1,{"timeout":1000000000000},"pin"]`)
		if i%100 == 0 {
			id++
			steadyCalls++
			f.line(steady, fmt.Sprintf(`[48,%d,{},"steady"]`, id))
			f.clock.Advance(time.Millisecond)
			f.line(steady, fmt.Sprintf(`[50,%d,{},[]]`, id))
		}
	}
	late := netip.MustParseAddrPort("127.0.0.1:50001")
	f.line(late, `[48,1,{},"late"]`)
	f.clock.Advance(2 * time.Millisecond)
	f.line(late, `[50,1,{},[]]`)

	if got := f.count(t, metrics.Response, "steady"); got != uint64(steadyCalls) {
		t.Errorf("steady sender: %d responses, want %d", got, steadyCalls)
	}
	if got := f.count(t, metrics.Response, "late"); got != 1 {
		t.Errorf("sender after the flood: %d responses, want 1", got)
	}
	if got := f.value(t, "wamp_observer_log_senders"); got != 10_000 {
		t.Errorf("senders %v, want the table's 10,000", got)
	}
	evicted := f.value(t, "wamp_observer_log_senders_evicted_total")
	if want := float64(extra + 2); evicted != want { // the flood's excess, and places for steady and late
		t.Errorf("evicted %v senders, want %v", evicted, want)
	}
	dropped := f.value(t, "wamp_observer_log_calls_dropped_total")
	if dropped != evicted { // one call each, none past its deadline yet
		t.Errorf("dropped %v calls, want %v", dropped, evicted)
	}
	f.clock.Advance(DefaultMaxTimeout + metrics.DealerBackstop + time.Millisecond)
	f.tracker.Expire(nil)
	timeouts := f.count(t, metrics.Timeout, "pin")
	if float64(timeouts)+dropped != attackers+extra {
		t.Errorf("attacker calls: %d timeouts + %v dropped, want %d in all", timeouts, dropped, attackers+extra)
	}
	if got, want := f.sum(t, metrics.Timeout, "pin"), float64(timeouts)*DefaultMaxTimeout.Seconds(); got != want {
		t.Errorf("timeouts sum %gs, want %gs: each the capped minute", got, want)
	}
	if got := f.tracker.Pending(); got != 0 {
		t.Errorf("%d calls still pending", got)
	}
}

// An evicted sender's calls past their deadline are timeouts, as any
// answer to them would be; those not yet due are dropped, not recorded:
// their answer, logged later, finds no call and changes no count.
func TestEvictionNeverRecordsAWrongOutcome(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{MaxSenders: 2})
	a, b, c := sender(1), sender(2), sender(3)
	f.line(a, `[48,1,{},"p"]`) // 300ms deadline
	f.line(a, `[48,2,{"timeout":10000},"p"]`)
	f.line(b, `[48,1,{},"p"]`)
	f.clock.Advance(400 * time.Millisecond)
	f.line(c, `[48,1,{},"p"]`) // evicts a, seen least recently
	f.line(a, `[50,2,{},[]]`)  // a is new again (evicting b): answers nothing
	f.line(a, `[50,1,{},[]]`)
	if got := f.count(t, metrics.Timeout, "p"); got != 2 { // a's call 1 and b's, both past their deadline
		t.Errorf("timeouts %d, want 2", got)
	}
	if got := f.count(t, metrics.Response, "p"); got != 0 {
		t.Errorf("responses %d, want 0", got)
	}
	if got := f.value(t, "wamp_observer_log_calls_dropped_total"); got != 1 { // a's call 2
		t.Errorf("dropped %v, want 1", got)
	}
	if got := f.value(t, "wamp_observer_log_senders_evicted_total"); got != 2 {
		t.Errorf("evicted %v, want 2", got)
	}
	f.line(c, `[50,1,{},[]]`) // c was never evicted
	if got := f.count(t, metrics.Response, "p"); got != 1 {
		t.Errorf("responses %d, want 1", got)
	}
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A sender with one pinned call and 1,024 REGISTER lines of 60 KB held
// 63 MiB. Names too long to remember, or beyond a sender's byte budget,
// are not remembered; a well-behaved callee alongside still has its
// INVOCATIONs timed.
func TestRegistrationsAreBoundedInBytes(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	callee := sender(0)
	f.line(callee, `[64,1,{},"hello1"]`)
	f.line(callee, `[65,1,77]`)
	before := heapAfterGC()
	for _, size := range []int{60 << 10, maxRememberedProcedure} {
		name := strings.Repeat("x", size)
		for s := 1; s <= 2; s++ {
			f.line(sender(s), `[48,1,{},"pin"]`)
			for i := range 1024 {
				f.line(sender(s), fmt.Sprintf(`[64,%d,{},"%s"]`, i+1, name))
				f.line(sender(s), fmt.Sprintf(`[65,%d,%d]`, i+1, 2*size+i))
			}
		}
	}
	grown := int64(heapAfterGC()) - int64(before)
	// The budget, and 64 KiB for what the senders and the family's 100
	// series of those names hold besides (measured at the budget itself,
	// the heap's noise made this fail now and then).
	if limit := int64(2*2*maxRegistrationBytes + 64<<10); grown > limit {
		t.Errorf("two senders' registrations hold %d bytes, want at most %d", grown, limit)
	}
	f.line(callee, `[68,5,77,{},[]]`) // no details.procedure: learnt from REGISTERED
	f.clock.Advance(3 * time.Millisecond)
	f.line(callee, `[70,5,{},[]]`)
	if got := f.count(t, metrics.Response, "hello1"); got != 1 {
		t.Errorf("callee's hello1: %d responses, want 1", got)
	}
	f.line(sender(1), fmt.Sprintf(`[68,1,%d,{},[]]`, 2*60<<10)) // its first 60 KB registration was not remembered
	if got := testutil.ToFloat64(f.in.badLines[ReasonNoProcedure]); got != 1 {
		t.Errorf("no_procedure %v, want 1", got)
	}
	runtime.KeepAlive(f.r)
}

// The byte budgets hold per sender and over all senders, and what a
// sender was charged is given back when it is forgotten or overwrites an
// entry.
func TestRegistrationChargesAreGivenBack(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	name := strings.Repeat("y", 100)
	for s := range 3 {
		for i := range 2000 {
			f.line(sender(s), fmt.Sprintf(`[64,%d,{},"%s"]`, i%1000, name)) // half overwrite
			if i%2 == 0 {
				f.line(sender(s), fmt.Sprintf(`[65,%d,%d]`, i%1000, i%700))
			}
		}
		if snd := f.r.senders[sender(s)]; snd.regBytes > maxRegistrationBytes || snd.regBytes <= maxRegistrationBytes-(100+registrationOverhead) {
			t.Errorf("sender %d charged %d bytes, want the budget of %d, nearly full", s, snd.regBytes, maxRegistrationBytes)
		}
	}
	var sum int64
	for _, snd := range f.r.senders {
		var held int64
		for _, m := range []map[uint64]string{snd.registering, snd.registrations} {
			for _, p := range m {
				held += int64(len(p) + registrationOverhead)
			}
		}
		if held != snd.regBytes {
			t.Errorf("a sender holds %d bytes of names, charged %d", held, snd.regBytes)
		}
		sum += held
	}
	if got := f.in.registrationBytes.Load(); got != sum {
		t.Errorf("ingester charged %d bytes, its senders %d", got, sum)
	}
	f.r.Close()
	if got := f.in.registrationBytes.Load(); got != 0 {
		t.Errorf("after the senders left, %d bytes still charged", got)
	}
}

// A pair whose names fail the linter is linted once: its further lines
// are refused from memory, at the cost of a map lookup, not of building
// and linting a family (hundreds of allocations); it takes no family
// place, so such pairs cannot lock valid ones out.
func TestLintRefusedPairIsLintedOnce(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{MaxFamilies: 2})
	bad := []byte(testkit.LogLine("php", "ms", `[48,1,{},"x"]`))
	from := sender(1)
	f.r.HandleLine(from, bad)
	perLine := testing.AllocsPerRun(100, func() { f.r.HandleLine(from, bad) })
	lint := testing.AllocsPerRun(10, func() { _ = lintFamilyNames("php_ms") })
	if perLine*10 > lint {
		t.Errorf("a refused pair's line allocates %v times, linting %v: linted again?", perLine, lint)
	}
	for _, dir := range []string{"sec", "us", "ns", "kb"} {
		f.r.HandleLine(from, []byte(testkit.LogLine("php", dir, `[48,1,{},"x"]`)))
	}
	if got, want := testutil.ToFloat64(f.in.badLines[ReasonLintName]), float64(2+100+4); got != want {
		t.Errorf("lint_name %v, want %v", got, want)
	}
	f.line(from, `[48,1,{},"ok"]`) // php/out: a family place was still free
	f.line(from, `[50,1,{},[]]`)
	if got := f.count(t, metrics.Response, "ok"); got != 1 {
		t.Errorf("php/out: %d responses, want 1", got)
	}
}

// Every pair the README names, and the router's own prefix, pass the
// linter.
func TestDocumentedPairsPassTheLinter(t *testing.T) {
	for _, prefix := range []string{"wamp_in", "wamp_out", "wamp_v1", "wamp_router", "php_out"} {
		if err := lintFamilyNames(prefix); err != nil {
			t.Errorf("%s: %v", prefix, err)
		}
	}
}

// worstCaseFamilyBytes is the README's stated bound on one family's part
// of a text scrape with default limits, by -latency-histograms: 1,000
// procedures of 256 bytes under the longest prefix a log sender may
// choose, every outcome observed, and error reasons at their bounds.
var worstCaseFamilyBytes = map[metrics.LatencyExposition]int{
	metrics.LatencyOff:     3_500_000,
	metrics.LatencyNative:  6_800_000,
	metrics.LatencyClassic: 19_300_000,
	metrics.LatencyBoth:    19_300_000,
}

func TestWorstCaseScrapeSizeOfAFamily(t *testing.T) {
	for mode, bound := range worstCaseFamilyBytes {
		t.Run(mode.String(), func(t *testing.T) {
			if got := fullFamilyScrapeBytes(t, mode); got > bound {
				t.Errorf("a full family scrapes as %d bytes, over the stated %d", got, bound)
			} else {
				t.Logf("a full family scrapes as %d bytes", got)
			}
		})
	}
}

func fullFamilyScrapeBytes(t *testing.T, mode metrics.LatencyExposition) int {
	reg := prometheus.NewRegistry()
	prefix := strings.Repeat("p", maxNameLen) + "_" + strings.Repeat("d", maxNameLen)
	family, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: prefix, MaxProcedures: 1000, Latency: mode})
	if err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s := tracker.Open(family)
	id := uint64(0)
	for i := range 1001 { // one more than the bound: the overflow shows too
		p := fmt.Sprintf("%0*d", metrics.DefaultMaxProcedureLen, i)
		for o := range numOutcomes {
			id++
			s.Call(id, p, 0)
			clock.Advance(123456789 * time.Nanosecond)
			s.End(id, o)
		}
		// Error reasons at their bounds: every procedure with two of the
		// 100 longest URIs (2,000 series in all) and one beyond them,
		// under the overflow.
		for _, u := range []int{2 * i % metrics.DefaultMaxErrorURIs, (2*i + 1) % metrics.DefaultMaxErrorURIs, 1000 + i} {
			id++
			s.Call(id, p, 0)
			s.ErrorAt(tracker.Now(), id, fmt.Appendf(nil, "%0*d", metrics.DefaultMaxProcedureLen, u))
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Len()
}

// TestHugeTimeoutsAreReadAsTheRouterReadsThem: a CALL asking for more
// than a Duration holds (MaxInt64 ms, as a client may send for "wait as
// long as it takes") asked for a long wait, so the answer decides; one
// beyond an int64 (uint64 max) is no timeout for nexus's dealer, which
// wraps it negative, nor for the router's observer, so the default
// deadline holds.
func TestHugeTimeoutsAreReadAsTheRouterReadsThem(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	from := sender(1)
	f.line(from, `[48,1,{"timeout":9223372036854775807},"slow"]`)
	f.line(from, `[48,2,{"timeout":18446744073709551615},"wrapped"]`)
	f.clock.Advance(time.Second)
	f.tracker.Expire(nil)
	f.line(from, `[50,1,{}]`)
	f.line(from, `[50,2,{}]`)
	for _, tc := range []struct {
		procedure           string
		responses, timeouts uint64
	}{
		{"slow", 1, 0},
		{"wrapped", 0, 1},
	} {
		if got := f.count(t, metrics.Response, tc.procedure); got != tc.responses {
			t.Errorf("%s: %d responses, want %d", tc.procedure, got, tc.responses)
		}
		if got := f.count(t, metrics.Timeout, tc.procedure); got != tc.timeouts {
			t.Errorf("%s: %d timeouts, want %d", tc.procedure, got, tc.timeouts)
		}
	}
}

// TestTimeoutsReadAsTheDealerReadsThem: for every kind of number a JSON
// CALL can carry as its timeout, the log parser reads what nexus's own
// JSON serializer and wamp.AsInt64 make of it, by the rule the router's
// observer applies (wampcall.Timeout).
func TestTimeoutsReadAsTheDealerReadsThem(t *testing.T) {
	p := newLineParser()
	for _, v := range []string{"300", "1", "0", "-5", "1500.7", "0.5", "1e3", "-1e3", "9223372036853", "9223372036855",
		"9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "9.3e18", "1e300"} {
		msg := `[48,2,{"timeout":` + v + `},"p",[]]`
		decoded, err := (&serialize.JSONSerializer{}).Deserialize([]byte(msg))
		if err != nil {
			t.Fatalf("%s: nexus: %v", v, err)
		}
		ms, _ := wamp.AsInt64(decoded.(*wamp.Call).Options[wamp.OptTimeout])
		want := wampcall.Timeout(ms)
		var l logLine
		if r := p.parse([]byte(testkit.LogLine("wamp", "out", msg)), &l); r != "" {
			t.Fatalf("%s: refused as %s", v, r)
		}
		if l.timeout != want {
			t.Errorf("timeout %s: the log parser reads %v, the router %v", v, l.timeout, want)
		}
	}
}

// TestFamiliesAreThoseLinesCreated: the families listed for the final
// counts are the pairs accepted, in order, and no refused one.
func TestFamiliesAreThoseLinesCreated(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	if _, err := metrics.NewFamily(f.reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: 1}); err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]string{{"php", "out"}, {"wamp", "router"}, {"php", "ms"}, {"wamp", "in"}, {"php", "out"}} {
		f.r.HandleLine(sender(1), []byte(testkit.LogLine(pair[0], pair[1], `[48,1,{},"p"]`)))
	}
	var names []string
	for _, fam := range f.in.Families() {
		names = append(names, fam.Name())
	}
	if want := []string{"php_out", "wamp_in"}; !slices.Equal(names, want) {
		t.Errorf("families %q, want %q", names, want)
	}
}
