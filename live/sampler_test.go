package live

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pageFixture is a tracker and the three families of the page, on a fake
// clock, and a Sampler of them.
type pageFixture struct {
	clock    *testkit.FakeClock
	tracker  *metrics.Tracker
	families [numViews]*metrics.Family
	sampler  *Sampler
	lines    uint64
}

func newPageFixture(t *testing.T) *pageFixture {
	t.Helper()
	f := &pageFixture{clock: testkit.NewFakeClock(time.Unix(1_700_000_000, 0))}
	var err error
	if f.tracker, err = metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: time.Minute, Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	for v, prefix := range []string{"wamp_router", "wamp_out", "wamp_in"} {
		if f.families[v], err = metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: prefix}); err != nil {
			t.Fatal(err)
		}
	}
	f.sampler = NewSampler(Sources{
		Family:   func(v View) *metrics.Family { return f.families[v] },
		Sessions: func() int64 { return 3 },
		InFlight: f.families[Router].Pending,
		LogLines: func() (uint64, uint64) { return f.lines, 2 },
		UDPDrops: func() (uint64, bool) { return 0, false },
	}, f.clock.Now)
	return f
}

// second makes calls in view v, each taking its duration and ending with
// its outcome, spread over one second of the fake clock, then samples.
func (f *pageFixture) second(calls map[View][]call) {
	sessions := map[View]*metrics.Session{}
	for v := range calls {
		sessions[v] = f.tracker.Open(f.families[v])
	}
	id := uint64(0)
	for v, cs := range calls {
		for _, c := range cs {
			id++
			sessions[v].Call(id, c.procedure, 0)
			f.clock.Advance(c.took)
			sessions[v].End(id, c.outcome)
		}
	}
	for _, s := range sessions {
		s.Close()
	}
	f.clock.Advance(time.Second)
	f.lines += 50
	f.sampler.Sample()
}

type call struct {
	procedure string
	took      time.Duration
	outcome   metrics.Outcome
}

func repeat(n int, c call) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
	}
	return out
}

func (f *pageFixture) row(t *testing.T, procedure string) Row {
	t.Helper()
	for _, r := range f.sampler.Snapshot().Rows {
		if r.Procedure == procedure {
			return r
		}
	}
	t.Fatalf("no row for %s", procedure)
	return Row{}
}

func near(got *float64, want time.Duration) bool {
	w := float64(want) / float64(time.Millisecond)
	return got != nil && math.Abs(*got-w) <= w*(math.Exp2(1.0/8)-1)
}

// Calls per second are over the last 10 s, percentiles over the last
// minute, error and timeout shares of the calls ended in the last minute,
// and each view of a procedure is its own.
func TestTheSnapshotIsTheLastSecondsOfEachView(t *testing.T) {
	f := newPageFixture(t)
	for range 80 {
		f.second(map[View][]call{
			Router: append(repeat(8, call{"hello", 10 * time.Millisecond, metrics.Response}),
				call{"hello", 20 * time.Millisecond, metrics.Error}, call{"hello", time.Minute, metrics.Timeout}),
			Caller: repeat(4, call{"hello", 12 * time.Millisecond, metrics.Response}),
		})
	}
	r := f.row(t, "hello")
	if r.Router == nil || r.Caller == nil || r.Callee != nil {
		t.Fatalf("views %+v: want router and caller only", r)
	}
	if r.Router.CallsPerSecond != 10 || r.Caller.CallsPerSecond != 4 {
		t.Errorf("calls/s router %v, caller %v; want 10 and 4", r.Router.CallsPerSecond, r.Caller.CallsPerSecond)
	}
	if r.Router.ErrorPercent != 10 || r.Router.TimeoutPercent != 10 || r.Caller.ErrorPercent != 0 {
		t.Errorf("router errors %v%%, timeouts %v%%, caller errors %v%%; want 10, 10, 0",
			r.Router.ErrorPercent, r.Router.TimeoutPercent, r.Caller.ErrorPercent)
	}
	if !near(r.Router.P50, 10*time.Millisecond) || !near(r.Router.P99, 10*time.Millisecond) || !near(r.Caller.P50, 12*time.Millisecond) {
		t.Errorf("p50/p99 router %v/%v, caller %v: want 10, 10, 12 ms", *r.Router.P50, *r.Router.P99, *r.Caller.P50)
	}
	for i, p := range r.Router.Spark {
		if p != 10 && i >= len(r.Router.Spark)-7 { // the last 70 s are all traffic
			t.Errorf("spark[%d] = %v, want 10", i, p)
		}
	}
	if got := f.sampler.Snapshot(); got.Log == nil || got.Log.LinesPerSecond != 50 || got.Log.BadLines != 2 || got.Log.UDPKernelDrops != nil {
		t.Errorf("log %+v: want 50 lines/s, 2 bad, drops unknown", got.Log)
	}

	// Now the calls slow down: after a minute and a bit, the percentiles
	// are those of the slow calls only, and the old ones are gone.
	for range 75 {
		f.second(map[View][]call{Router: repeat(5, call{"hello", 200 * time.Millisecond, metrics.Response})})
	}
	r = f.row(t, "hello")
	if !near(r.Router.P50, 200*time.Millisecond) || !near(r.Router.P99, 200*time.Millisecond) {
		t.Errorf("after the slowdown p50 %v, p99 %v: want 200 ms", *r.Router.P50, *r.Router.P99)
	}
	if r.Router.CallsPerSecond != 5 || r.Router.ErrorPercent != 0 || r.Caller.CallsPerSecond != 0 || r.Caller.P50 != nil {
		t.Errorf("after the slowdown: %+v, caller %+v", r.Router, r.Caller)
	}
}

// A procedure the page has not seen before starts at 0 calls/s, not at
// the calls it had before the page's first sample of it.
func TestAProcedureSeenLateStartsFromItsFirstSample(t *testing.T) {
	f := newPageFixture(t)
	s := f.tracker.Open(f.families[Router])
	for i := range uint64(1000) {
		s.Call(i, "late", 0)
		s.Result(i)
	}
	f.sampler.Sample()
	if r := f.row(t, "late"); r.Router.CallsPerSecond != 0 || r.Router.Calls != 0 {
		t.Errorf("first sample: %+v, want nothing yet", r.Router)
	}
	if got := f.sampler.Snapshot().Calls; got != 1000 {
		t.Errorf("calls since the start %d, want 1000", got)
	}
}

// The JSON endpoint serves the Snapshot; the page and its assets are
// embedded; the page says so when there is no traffic yet.
func TestThePageAndItsData(t *testing.T) {
	f := newPageFixture(t)
	f.families[Router].Declare("hello", 0)
	f.sampler.Sample()
	srv := httptest.NewServer(f.sampler.Handler(testkit.QuietLog()))
	defer srv.Close()

	get := func(path string) (string, string) {
		t.Helper()
		rsp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		b, _ := io.ReadAll(rsp.Body)
		if rsp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, rsp.Status)
		}
		return rsp.Header.Get("Content-Type"), string(b)
	}
	ct, body := get("/ui/data.json")
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil || !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("data: %q, %v", ct, err)
	}
	if snap.Calls != 0 || snap.Sessions != 3 || len(snap.Rows) != 1 || snap.Rows[0].Procedure != "hello" || len(snap.Rows[0].Router.Spark) != sparkPoints {
		t.Errorf("data %+v", snap)
	}
	for path, want := range map[string]string{"/ui": "No calls yet", "/ui/": "<table", "/ui/app.js": "/ui/data.json", "/ui/style.css": "prefers-color-scheme"} {
		if _, body := get(path); !strings.Contains(body, want) {
			t.Errorf("%s has no %q", path, want)
		}
	}
}

func TestBrowsersGetThePageAndEverythingElseTheMetrics(t *testing.T) {
	for accept, html := range map[string]bool{
		"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8": true, // Chromium, Firefox
		"text/html": true,
		"application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2": false, // Prometheus 2.42
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2":  false,
		"*/*":                         false, // curl
		"":                            false,
		"text/plain, text/html;q=0.5": false,
		"text/html;q=0":               false, // refused
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := PrefersHTML(r); got != html {
			t.Errorf("Accept %q: page %v, want %v", accept, got, html)
		}
	}
}

// A procedure whose slot was reclaimed and that came back within one
// sample has new series, counting from zero: its row starts afresh rather
// than taking the drop for calls (it showed 1.8e18 calls/s).
func TestAProcedureBackFromAReclaimStartsAfresh(t *testing.T) {
	f := newPageFixture(t)
	reg := prometheus.NewRegistry()
	family, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: 2, ProcedureIdle: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.families[Router] = family
	s := f.tracker.Open(family)
	id := uint64(0)
	calls := func(procedure string, n int) {
		for range n {
			id++
			s.Call(id, procedure, 0)
			s.Result(id)
		}
	}
	calls("a", 100)
	calls("b", 1)
	f.sampler.Sample()
	f.clock.Advance(2 * time.Second) // a and b idle
	calls("c", 1)                    // the family is full: a and b give their slots
	calls("a", 1)                    // a is back, from zero
	f.clock.Advance(time.Second)
	f.sampler.Sample()
	r := f.row(t, "a").Router
	if r.CallsPerSecond != 0 || r.Calls != 0 || r.P50 == nil {
		t.Errorf("a back from a reclaim: %v calls/s, %d calls, p50 %v; want a fresh row (0, 0) with its one call's p50", r.CallsPerSecond, r.Calls, r.P50)
	}
}
