package router

// FuzzObserver drives one connObserver, wired to a real metrics.Tracker and
// metrics.Family on a fake clock, with a sequence of WAMP messages in both
// directions, clock moves and sweeps, decoded from the fuzz input. A small
// model of "What counts as what" (README) runs alongside, and after every
// operation the family's collectors must agree with it: calls in flight,
// sessions, the outcome histograms (counts and summed durations) and the
// calls recorded as "other"; after the last one, every summary series.
//
//	go test -run '^$' -fuzz '^FuzzObserver$' -fuzztime 1m -parallel 1 ./router
//
// Seeds are in testdata/fuzz/FuzzObserver and run with every plain `go test`;
// FUZZ_WRITE_SEEDS=1 go test -run TestWriteObserverFuzzSeeds ./router rewrites them.

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/wamp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// The input is a sequence of operations: an op byte (mod 16) and its
// argument bytes. A missing byte reads as 0.
const (
	opWelcome           = iota // router → client WELCOME (a second one replaces the session)
	opCall                     // client → router CALL: id, procedure, timeout kind, timeout value
	opResult                   // router → client RESULT: id, progress
	opError                    // router → client ERROR: request type, id, error URI
	opRegister                 // client → router REGISTER: id, procedure, match
	opRegistered               // router → client REGISTERED: id
	opGoodbyeFromClient        // client → router GOODBYE
	opGoodbyeToClient          // router → client GOODBYE
	opAbort                    // router → client ABORT
	opAdvance                  // clock += b ms
	opAdvanceBig               // clock += b × 25 ms
	opExpire                   // the sweeper: Tracker.Expire
	opIgnored                  // a message the observer must ignore: kind, id
	opCallAgain                // = opCall, to make calls more frequent
	opResultAgain              // = opResult
	opAdvanceExpire            // clock += b × 5 ms, then Expire
	numOps
)

const (
	fuzzDefaultTimeout = 300 * time.Millisecond
	fuzzMaxProcedures  = 3
	fuzzMaxOps         = 500
)

type opReader struct{ b []byte }

func (r *opReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// fuzzID: mostly 0..7 so that ids repeat; the top eight byte values give
// the edges of the id space.
func fuzzID(b byte) wamp.ID {
	if b < 0xf8 {
		return wamp.ID(b % 8)
	}
	return []wamp.ID{0, 1 << 53, 1<<53 + 1, math.MaxUint64, 1 << 63, 42, 1<<53 - 1, 1}[b-0xf8]
}

// fuzzProcedures include an empty one, one named "other" (a procedure like
// any other), the overflow value itself (recorded as overflow),
// invalid UTF-8 (msgpack and CBOR clients can send anything), a NUL.
var fuzzProcedures = []string{"hello1", "hello2", "com.example.add", "", "other", "\xff\xfe", "caf\xe9", "hello1.\xc3\xa9", "a\x00b", "hello3", metrics.OtherProcedure}

// hugeTimeouts are the edges of the timeout option, in the Go types the
// JSON, msgpack and CBOR decoders produce.
var hugeTimeouts = []any{int64(math.MaxInt64), uint64(math.MaxUint64), int64(1<<53 - 1), float64(1<<53 - 1),
	int64(9223372036854), int64(9223372036855), float64(1e15), math.Inf(1), math.NaN(), uint64(1 << 63),
	int64(1 << 62), int64(math.MinInt64), float64(-1e300), uint64(math.MaxInt64), float64(0.5), int64(1)}

// fuzzCallOptions builds a CALL's options: the timeout option as each
// serializer may decode it.
func fuzzCallOptions(kind, v byte) wamp.Dict {
	var val any
	switch kind % 16 {
	case 0:
		return nil
	case 1:
		return wamp.Dict{}
	case 2:
		val = int64(v) * 10
	case 3:
		val = uint64(v) * 10
	case 4:
		val = float64(v) * 10
	case 5:
		val = float64(v) / 4
	case 6:
		val = strconv.Itoa(int(v) * 10)
	case 7:
		val = int(v) * 10
	case 8:
		val = -int64(v)
	case 9:
		val = nil
	case 10:
		val = wamp.ID(v) * 10
	case 11:
		val = float32(v) * 10
	case 12:
		if v%2 == 0 {
			val = uint32(v) * 10
		} else {
			val = int32(v) * 10
		}
	case 13:
		val = hugeTimeouts[int(v)%len(hugeTimeouts)]
	case 14:
		val = true
	case 15:
		val = uint(v) * 10
	}
	return wamp.Dict{wamp.OptTimeout: val, "disclose_me": true}
}

func fuzzResultDetails(b byte) wamp.Dict {
	switch b % 6 {
	case 0:
		return nil
	case 1:
		return wamp.Dict{wamp.OptProgress: true}
	case 2:
		return wamp.Dict{wamp.OptProgress: false}
	case 3:
		return wamp.Dict{wamp.OptProgress: "true"}
	case 4:
		return wamp.Dict{wamp.OptProgress: 1}
	}
	return wamp.Dict{wamp.OptProgress: nil}
}

var fuzzErrorTypes = []wamp.MessageType{wamp.CALL, wamp.INVOCATION, wamp.REGISTER, wamp.SUBSCRIBE, wamp.CALL}

var fuzzErrorURIs = []wamp.URI{wamp.ErrTimeout, wamp.ErrCanceled, wamp.ErrNoSuchProcedure, "app.error.hello", "", "wamp.error.timeout\xff"}

func fuzzRegisterOptions(b byte) wamp.Dict {
	switch b % 6 {
	case 0:
		return nil
	case 1:
		return wamp.Dict{wamp.OptMatch: wamp.MatchExact}
	case 2:
		return wamp.Dict{wamp.OptMatch: wamp.MatchPrefix}
	case 3:
		return wamp.Dict{wamp.OptMatch: wamp.MatchWildcard}
	case 4:
		return wamp.Dict{wamp.OptMatch: ""}
	}
	return wamp.Dict{wamp.OptMatch: 5}
}

// ---------------------------------------------------------------------------
// The model: README "What counts as what", for one connection.

type modelCall struct {
	start    int64 // ns since the tracker started
	deadline int64 // when the tracker gives up on an answer
	limit    int64 // the duration a timeout records
	never    bool  // a deadline beyond any clock this run reaches
	label    string
	isOther  bool
}

type observerModel struct {
	now         int64
	open        bool
	sessionSeq  uint64
	pending     map[wamp.ID]modelCall
	registering map[wamp.ID]string // REGISTER ids awaiting REGISTERED (the connection's, across sessions)
	slots       map[string]bool    // procedures with their own series (raw, as looked up)
	otherSeries bool
	counts      map[string]*[3]uint64 // by message label
	hist        [3]uint64
	histSum     [3]float64
	otherCalls  uint64
	started     int // CALLs made while a session was open, with an id not pending then: distinct calls
}

func newObserverModel() *observerModel {
	return &observerModel{
		pending: map[wamp.ID]modelCall{}, registering: map[wamp.ID]string{}, slots: map[string]bool{},
		counts: map[string]*[3]uint64{},
	}
}

// lookup gives procedure's series: its own while fewer than the bound
// exist (CALLs and registrations both take a slot), else "other". Label
// values are made valid UTF-8.
func (m *observerModel) lookup(procedure string) (label string, isOther bool) {
	if !m.slots[procedure] {
		if len(m.slots) >= fuzzMaxProcedures || procedure == metrics.OtherProcedure {
			m.otherSeries = true
			return metrics.OtherProcedure, true
		}
		m.slots[procedure] = true
	}
	label = strings.ToValidUTF8(procedure, "\uFFFD")
	if m.counts[label] == nil {
		m.counts[label] = &[3]uint64{}
	}
	return label, false
}

// deadline is when the tracker gives up on a CALL with options, and the
// duration a timeout of it records. With a timeout option in milliseconds
// (as a number of any Go type, wamp.AsInt64) that is positive, the dealer
// enforces it: the answer decides, and the tracker gives up only
// metrics.DealerBackstop later. Otherwise the default timeout is both.
func (m *observerModel) deadline(options wamp.Dict) (deadline, limit int64, never bool) {
	t := fuzzDefaultTimeout.Nanoseconds()
	if v, ok := options[wamp.OptTimeout]; ok {
		if ms, ok := wamp.AsInt64(v); ok && ms > 0 {
			backstop := metrics.DealerBackstop.Nanoseconds()
			if ms > (math.MaxInt64-m.now-backstop)/int64(time.Millisecond) {
				return 0, 0, true
			}
			t = ms * int64(time.Millisecond)
			return m.now + t + backstop, t, false
		}
	}
	return m.now + t, t, false
}

func (m *observerModel) record(c modelCall, o metrics.Outcome, d int64) {
	if c.isOther {
		m.otherCalls++
	}
	if m.counts[c.label] == nil {
		m.counts[c.label] = &[3]uint64{}
	}
	m.counts[c.label][o]++
	m.hist[o]++
	m.histSum[o] += time.Duration(d).Seconds()
}

// end: an answer ends a pending call; after its deadline it is a timeout
// of exactly its limit.
func (m *observerModel) end(id wamp.ID, o metrics.Outcome) {
	c, ok := m.pending[id]
	if !ok {
		return
	}
	delete(m.pending, id)
	d := m.now - c.start
	if !c.never && m.now > c.deadline {
		o, d = metrics.Timeout, c.limit
	}
	m.record(c, o, d)
}

func (m *observerModel) expire() {
	ids := make([]wamp.ID, 0, len(m.pending))
	for id, c := range m.pending {
		if !c.never && c.deadline < m.now {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return m.pending[ids[i]].deadline < m.pending[ids[j]].deadline })
	for _, id := range ids {
		c := m.pending[id]
		delete(m.pending, id)
		m.record(c, metrics.Timeout, c.limit)
	}
}

// close: calls past their deadline when the session ends are timeouts;
// the others have no outcome.
func (m *observerModel) close() {
	m.open = false
	m.expire()
	clear(m.pending)
}

// ---------------------------------------------------------------------------
// Reading the family's collectors without a full Gather per operation.

// capturingRegistry registers with a real registry and remembers each
// collector by metric name.
type capturingRegistry struct {
	*prometheus.Registry
	byName map[string]prometheus.Collector
}

func (c *capturingRegistry) Register(col prometheus.Collector) error {
	if err := c.Registry.Register(col); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc, 16)
	col.Describe(ch)
	close(ch)
	for d := range ch {
		// Desc{fqName: "name", help: ...}
		_, after, _ := strings.Cut(d.String(), `fqName: "`)
		name, _, _ := strings.Cut(after, `"`)
		c.byName[name] = col
	}
	return nil
}

func (c *capturingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, col := range cs {
		if err := c.Register(col); err != nil {
			panic(err)
		}
	}
}

// read returns the one metric of the collector named name.
func (c *capturingRegistry) read(t *testing.T, name string) *dto.Metric {
	t.Helper()
	col, ok := c.byName[name]
	if !ok {
		t.Fatalf("no collector %s", name)
	}
	var d dto.Metric
	if m, ok := col.(prometheus.Metric); ok { // histograms, gauges, counters: no channel needed
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	ch := make(chan prometheus.Metric, 4)
	col.Collect(ch)
	close(ch)
	n := 0
	for m := range ch {
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%s: %d metrics, want 1", name, n)
	}
	return &d
}

var fuzzOutcomes = []metrics.Outcome{metrics.Response, metrics.Error, metrics.Timeout}

func FuzzObserver(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzObserver; this one keeps the
	// target meaningful should that directory go missing.
	f.Add(observerSeeds()["caller_result_error_timeouts"])
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4*fuzzMaxOps {
			ops = ops[:4*fuzzMaxOps]
		}
		epoch := time.Unix(1_700_000_000, 0)
		var elapsed time.Duration
		now := func() time.Time { return epoch.Add(elapsed) }
		reg := &capturingRegistry{Registry: prometheus.NewRegistry(), byName: map[string]prometheus.Collector{}}
		// Slots are never reclaimed here (the clock may leap years):
		// reclaiming has tests of its own in package metrics.
		family, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: fuzzMaxProcedures,
			ProcedureIdle: time.Duration(math.MaxInt64)})
		if err != nil {
			t.Fatal(err)
		}
		tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: fuzzDefaultTimeout, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		var current *metrics.Session
		obs := newConnObserver(func(string) SessionObservers {
			current = tracker.Open(family)
			return SessionObservers{Calls: current}
		}, nil)
		m := newObserverModel()
		// The operations so far, for failure messages; formatted only then.
		var trace []func() string
		traceText := func() string {
			lines := make([]string, len(trace))
			for i, f := range trace {
				lines[i] = f()
			}
			return strings.Join(lines, "\n  ")
		}
		note := func(s string) { trace = append(trace, func() string { return s }) }

		// check compares the family with the model: what the session holds
		// after every operation, and the outcomes (full) after those that
		// may end a call and at the end. An outcome recorded by any other
		// operation shows at the next full check all the same.
		check := func(full bool) {
			t.Helper()
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("after:\n  %s\n%s", traceText(), fmt.Sprintf(format, args...))
			}
			if open := obs.session.Load() != nil; open != m.open {
				fail("session open %v, want %v", open, m.open)
			}
			inFlight := reg.read(t, "wamp_router_calls_in_flight").GetGauge().GetValue()
			sessionPending := 0
			if m.open {
				sessionPending = current.Pending()
			}
			if inFlight < 0 || inFlight != float64(sessionPending) || sessionPending != len(m.pending) {
				fail("calls_in_flight %v, session pending %d, model pending %d", inFlight, sessionPending, len(m.pending))
			}
			wantSessions := 0.0
			if m.open {
				wantSessions = 1
			}
			if v := reg.read(t, "wamp_router_sessions").GetGauge().GetValue(); v != wantSessions {
				fail("sessions gauge %v, want %v", v, wantSessions)
			}
			if !full {
				return
			}
			for _, o := range fuzzOutcomes {
				h := reg.read(t, "wamp_router_"+o.String()+"_total_seconds").GetHistogram()
				if h.GetSampleCount() != m.hist[o] {
					fail("%s recorded %d, want %d", o, h.GetSampleCount(), m.hist[o])
				}
				if diff := math.Abs(h.GetSampleSum() - m.histSum[o]); diff > 1e-9*math.Max(1, math.Abs(m.histSum[o])) {
					fail("%s durations sum to %vs, want %vs", o, h.GetSampleSum(), m.histSum[o])
				}
			}
			if v := reg.read(t, "wamp_router_other_calls_total").GetCounter().GetValue(); v != float64(m.otherCalls) {
				fail("other_calls_total %v, want %d", v, m.otherCalls)
			}
		}

		r := &opReader{b: ops}
		for n := 0; len(r.b) > 0 && n < fuzzMaxOps; n++ {
			op := r.next() % numOps
			switch op {
			case opWelcome:
				obs.toClient(&wamp.Welcome{ID: wamp.ID(n + 1), Details: wamp.Dict{}})
				m.close()
				m.open = true
				m.sessionSeq++
				note("WELCOME")
			case opCall, opCallAgain:
				id, proc, opts := fuzzID(r.next()), fuzzProcedures[int(r.next())%len(fuzzProcedures)], fuzzCallOptions(r.next(), r.next())
				obs.fromClient(&wamp.Call{Request: id, Options: opts, Procedure: wamp.URI(proc)})
				if m.open {
					label, isOther := m.lookup(proc)
					// A repeated id is not a new call while the first is
					// pending; once that one ended, the id may start another.
					if _, dup := m.pending[id]; !dup {
						m.started++
						deadline, limit, never := m.deadline(opts)
						m.pending[id] = modelCall{start: m.now, deadline: deadline, limit: limit, never: never, label: label, isOther: isOther}
					}
				}
				trace = append(trace, func() string { return fmt.Sprintf("CALL id=%d procedure=%q options=%#v", id, proc, opts) })
			case opResult, opResultAgain:
				id, details := fuzzID(r.next()), fuzzResultDetails(r.next())
				obs.toClient(&wamp.Result{Request: id, Details: details})
				if progress, _ := details[wamp.OptProgress].(bool); m.open && !progress {
					m.end(id, metrics.Response)
				}
				trace = append(trace, func() string { return fmt.Sprintf("RESULT id=%d details=%#v", id, details) })
			case opError:
				typ, id, uri := fuzzErrorTypes[int(r.next())%len(fuzzErrorTypes)], fuzzID(r.next()), fuzzErrorURIs[int(r.next())%len(fuzzErrorURIs)]
				obs.toClient(&wamp.Error{Type: typ, Request: id, Details: wamp.Dict{}, Error: uri})
				switch typ {
				case wamp.CALL:
					if m.open {
						o := metrics.Error
						if uri == wamp.ErrTimeout {
							o = metrics.Timeout
						}
						m.end(id, o)
					}
				case wamp.REGISTER:
					delete(m.registering, id)
				}
				trace = append(trace, func() string { return fmt.Sprintf("ERROR type=%d id=%d uri=%q", typ, id, uri) })
			case opRegister:
				id, proc, opts := fuzzID(r.next()), fuzzProcedures[int(r.next())%len(fuzzProcedures)], fuzzRegisterOptions(r.next())
				obs.fromClient(&wamp.Register{Request: id, Options: opts, Procedure: wamp.URI(proc)})
				match, _ := opts[wamp.OptMatch].(string)
				if m.open && (match == "" || match == wamp.MatchExact) {
					m.registering[id] = proc
				}
				trace = append(trace, func() string { return fmt.Sprintf("REGISTER id=%d procedure=%q options=%#v", id, proc, opts) })
			case opRegistered:
				id := fuzzID(r.next())
				obs.toClient(&wamp.Registered{Request: id, Registration: 4242})
				if proc, ok := m.registering[id]; ok {
					delete(m.registering, id)
					if m.open {
						m.lookup(proc)
					}
				}
				trace = append(trace, func() string { return fmt.Sprintf("REGISTERED id=%d", id) })
			case opGoodbyeFromClient:
				obs.fromClient(&wamp.Goodbye{Details: wamp.Dict{}, Reason: wamp.CloseRealm})
				m.close()
				note("GOODBYE from client")
			case opGoodbyeToClient:
				obs.toClient(&wamp.Goodbye{Details: wamp.Dict{}, Reason: wamp.CloseGoodbyeAndOut})
				m.close()
				note("GOODBYE to client")
			case opAbort:
				obs.toClient(&wamp.Abort{Details: wamp.Dict{}, Reason: wamp.ErrProtocolViolation})
				m.close()
				note("ABORT")
			case opAdvance, opAdvanceBig:
				d := time.Duration(r.next()) * time.Millisecond
				if op == opAdvanceBig {
					d *= 25
				}
				elapsed += d
				m.now += int64(d)
				at := elapsed
				trace = append(trace, func() string { return fmt.Sprintf("clock +%v = %v", d, at) })
			case opAdvanceExpire:
				d := time.Duration(r.next()) * 5 * time.Millisecond
				elapsed += d
				m.now += int64(d)
				tracker.Expire(nil)
				m.expire()
				at := elapsed
				trace = append(trace, func() string { return fmt.Sprintf("clock +%v = %v, sweep", d, at) })
			case opExpire:
				tracker.Expire(nil)
				m.expire()
				note("sweep")
			case opIgnored:
				kind, id := r.next(), fuzzID(r.next())
				var msg wamp.Message
				toClient := false
				switch kind % 8 {
				case 0:
					msg = &wamp.Hello{Realm: "realm1", Details: wamp.Dict{}}
				case 1:
					msg, toClient = &wamp.Invocation{Request: id, Registration: 4242, Details: wamp.Dict{}}, true
				case 2:
					msg = &wamp.Yield{Request: id, Options: wamp.Dict{}}
				case 3:
					msg, toClient = &wamp.Event{Subscription: 1, Publication: 2, Details: wamp.Dict{}}, true
				case 4:
					msg = &wamp.Error{Type: wamp.INVOCATION, Request: id, Details: wamp.Dict{}, Error: "app.error.hello"}
				case 5:
					msg = &wamp.Result{Request: id, Details: wamp.Dict{}} // the wrong direction
				case 6:
					msg, toClient = &wamp.Call{Request: id, Options: wamp.Dict{}, Procedure: "hello1"}, true // the wrong direction
				case 7:
					msg = &wamp.Cancel{Request: id, Options: wamp.Dict{}}
				}
				if toClient {
					obs.toClient(msg)
				} else {
					obs.fromClient(msg)
				}
				trace = append(trace, func() string { return fmt.Sprintf("ignored %T id=%d to client=%v", msg, id, toClient) })
			}
			switch op {
			case opResult, opResultAgain, opError, opExpire, opAdvanceExpire:
				check(true)
			default:
				check(false)
			}
		}

		// The connection goes away.
		obs.endSession(CloseConnectionLost)
		m.close()
		note("connection closed")
		check(true)

		// Each call is recorded at most once (the model checked which, after
		// every operation): no more outcomes than distinct calls started
		// while a session was open.
		var recorded uint64
		for _, o := range fuzzOutcomes {
			recorded += m.hist[o]
		}
		if recorded > uint64(m.started) {
			t.Fatalf("after:\n  %s\n%d outcomes recorded for %d distinct calls", traceText(), recorded, m.started)
		}
		checkObserverScrape(t, reg.Registry, m)
	})
}

// checkObserverScrape compares the whole scrape with the model: every
// summary series, and the histograms holding the same calls.
func checkObserverScrape(t *testing.T, reg *prometheus.Registry, m *observerModel) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]*[3]uint64{}
	var recorded, histCount uint64
	for _, mf := range mfs {
		name := mf.GetName()
		for _, o := range fuzzOutcomes {
			switch name {
			case "wamp_router_" + o.String() + "_seconds":
				for _, metric := range mf.GetMetric() {
					label := ""
					for _, l := range metric.GetLabel() {
						if l.GetName() == "message" {
							label = l.GetValue()
						}
					}
					if got[label] == nil {
						got[label] = &[3]uint64{}
					}
					got[label][o] += metric.GetSummary().GetSampleCount()
					recorded += metric.GetSummary().GetSampleCount()
				}
			case "wamp_router_" + o.String() + "_total_seconds":
				histCount += mf.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		if name == "wamp_router_calls_in_flight" || name == "wamp_router_sessions" {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Fatalf("%s is %v with no connection", name, v)
			}
		}
	}
	if recorded != histCount {
		t.Fatalf("the summaries hold %d calls, the histograms %d", recorded, histCount)
	}
	want := map[string][3]uint64{}
	for label, c := range m.counts {
		want[label] = *c
	}
	if m.otherSeries {
		if _, ok := want[metrics.OtherProcedure]; !ok {
			want[metrics.OtherProcedure] = [3]uint64{}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("series for %v, want %v", keys(got), keys(want))
	}
	for label, w := range want {
		if g := got[label]; g == nil || *g != w {
			t.Fatalf("message=%q: responses/errors/timeouts %v, want %v (series %q, want %q)", label, g, w, keys(got), keys(want))
		}
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for key := range m {
		k = append(k, strconv.Quote(key))
	}
	sort.Strings(k)
	return k
}

// ---------------------------------------------------------------------------
// Seeds

// Operation builders for seeds.
func sWelcome() []byte                   { return []byte{opWelcome} }
func sCall(id, proc, tk, tv byte) []byte { return []byte{opCall, id, proc, tk, tv} }
func sResult(id, progress byte) []byte   { return []byte{opResult, id, progress} }
func sError(typ, id, uri byte) []byte    { return []byte{opError, typ, id, uri} }
func sRegister(id, proc, match byte) []byte {
	return []byte{opRegister, id, proc, match}
}
func sRegistered(id byte) []byte      { return []byte{opRegistered, id} }
func sAdvance(ms byte) []byte         { return []byte{opAdvance, ms} }
func sAdvanceBig(x25ms byte) []byte   { return []byte{opAdvanceBig, x25ms} }
func sAdvanceExpire(x5ms byte) []byte { return []byte{opAdvanceExpire, x5ms} }
func sIgnored(kind, id byte) []byte   { return []byte{opIgnored, kind, id} }
func seq(parts ...[]byte) []byte      { return []byte(strings.Join(toStrings(parts), "")) }
func toStrings(parts [][]byte) []string {
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = string(p)
	}
	return s
}

// Indexes into the tables above, for readable seeds.
const (
	pHello1, pHello2, pAdd, pEmpty, pOther, pInvalid = 0, 1, 2, 3, 4, 5
	tNone, tInt64, tUint64, tFloat64, tString, tHuge = 0, 2, 3, 4, 6, 13
	prFinal, prProgress, prFalse                     = 0, 1, 2
	eCall, eInvocation, eRegister                    = 0, 1, 2
	uTimeout, uCanceled, uNoSuchProcedure, uApp      = 0, 1, 2, 3
	mExact, mPrefix                                  = 1, 2
)

// observerSeeds are realistic sessions: a caller's calls answered,
// failed, timed out by the dealer and by the clock; a callee registering;
// progressive results; sessions ending with calls pending.
func observerSeeds() map[string][]byte {
	return map[string][]byte{
		"caller_result_error_timeouts": seq(
			sWelcome(),
			sCall(1, pHello1, tUint64, 30), sAdvance(8), sResult(1, prFinal),
			sCall(2, pHello2, tInt64, 30), sAdvance(5), sError(eCall, 2, uApp),
			sCall(3, pHello1, tUint64, 30), sAdvanceBig(12), sError(eCall, 3, uTimeout),
			sCall(4, pHello1, tNone, 0), sAdvanceExpire(61), sResult(4, prFinal),
			sCall(5, pAdd, tNone, 0), sError(eCall, 5, uNoSuchProcedure),
			[]byte{opGoodbyeFromClient}),
		"callee_registers_then_caller_calls": seq(
			sWelcome(),
			sRegister(1, pHello1, 0), sRegistered(1),
			sRegister(2, pHello2, mPrefix), sRegistered(2),
			sRegister(3, pAdd, mExact), sError(eRegister, 3, uApp), sRegistered(3),
			sIgnored(1, 7), sIgnored(2, 7),
			sCall(4, pHello1, tFloat64, 100), sAdvance(3), sResult(4, prFinal),
			[]byte{opGoodbyeToClient}),
		"progressive_results_out_of_order": seq(
			sWelcome(),
			sCall(1, pHello1, tNone, 0), sCall(2, pHello2, tNone, 0),
			sResult(2, prProgress), sResult(1, prProgress), sAdvance(10), sResult(2, prFalse),
			sResult(1, prProgress), sAdvance(10), sResult(1, prFinal), sResult(1, prFinal)),
		"duplicate_ids_and_answers_without_calls": seq(
			sResult(1, prFinal), sCall(1, pHello1, tNone, 0),
			sWelcome(),
			sResult(6, prFinal), sError(eCall, 6, uApp),
			sCall(1, pHello1, tInt64, 10), sCall(1, pHello2, tInt64, 100), sAdvance(150),
			sResult(1, prFinal), sResult(1, prFinal),
			sCall(2, pHello1, tString, 100), sAdvanceExpire(70)),
		"sessions_end_with_calls_pending": seq(
			sWelcome(), sCall(1, pHello1, tNone, 0), sCall(2, pHello2, tNone, 0),
			sWelcome(), sResult(1, prFinal), sCall(3, pHello1, tNone, 0),
			[]byte{opAbort}, sResult(3, prFinal),
			sWelcome(), sCall(4, pAdd, tNone, 0), []byte{opGoodbyeFromClient}, sAdvanceExpire(100)),
		"procedures_beyond_the_bound": seq(
			sWelcome(),
			sCall(1, pHello1, tNone, 0), sCall(2, pHello2, tNone, 0), sCall(3, pInvalid, tNone, 0),
			sCall(4, pAdd, tNone, 0), sCall(5, pOther, tNone, 0), sCall(6, pEmpty, tNone, 0),
			sResult(1, prFinal), sResult(3, prFinal), sResult(4, prFinal), sResult(5, prFinal),
			sError(eCall, 6, uCanceled), sAdvanceExpire(100)),
		"timeout_option_types": seq(
			sWelcome(),
			sCall(1, pHello1, 10, 50), sCall(2, pHello1, 11, 50), sCall(3, pHello1, 12, 50),
			sCall(4, pHello1, 15, 50), sCall(5, pHello1, 5, 3), sCall(6, pHello1, 8, 3),
			sCall(7, pHello1, 9, 0), sAdvanceExpire(70), sAdvanceExpire(40)),
		"answer_exactly_at_the_deadline": seq(
			sWelcome(), sCall(1, pHello1, tInt64, 10), sAdvance(100), sResult(1, prFinal),
			sCall(2, pHello1, tInt64, 10), sAdvance(100), []byte{opExpire}, sAdvance(1), []byte{opExpire}),
		// Regression (fixed in 270f2c9): a timeout option larger than
		// about 292 years (here int64 max, as a msgpack client may send for
		// "no timeout") is clamped to the largest Duration, and start +
		// timeout overflowed: 1 ms later the sweep recorded the call as a
		// timeout of 292 years.
		"regression_huge_timeout_deadline_overflow": seq(
			sWelcome(), sAdvance(1), sCall(1, pHello1, tHuge, 0), sAdvanceExpire(2)),
	}
}

// TestWriteObserverFuzzSeeds (re)writes testdata/fuzz/FuzzObserver. It
// does nothing unless FUZZ_WRITE_SEEDS=1.
func TestWriteObserverFuzzSeeds(t *testing.T) {
	if os.Getenv("FUZZ_WRITE_SEEDS") != "1" {
		t.Skip("set FUZZ_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzObserver")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, ops := range observerSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", ops)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
