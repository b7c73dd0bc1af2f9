package wamplog

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

type logFixture struct {
	reg  *prometheus.Registry
	addr string
}

// startListener runs a real listener on a free loopback port with a
// running tracker, until the test ends.
func startListener(t *testing.T, timeout time.Duration, maxLineLen int) *logFixture {
	t.Helper()
	return startListenerWithClock(t, timeout, maxLineLen, nil)
}

// startListenerWithClock is startListener with the tracker on the
// clock now (time.Now when nil).
func startListenerWithClock(t *testing.T, timeout time.Duration, maxLineLen int, now func() time.Time) *logFixture {
	t.Helper()
	return startListenerWith(t, timeout, now, ListenerOpts{MaxLineLen: maxLineLen})
}

// startListenerWith is startListenerWithClock with the listener's
// options (their Logger is set here).
func startListenerWith(t *testing.T, timeout time.Duration, now func() time.Time, opts ListenerOpts) *logFixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: timeout, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// As in the program, the router's family is there first.
	if _, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10}); err != nil {
		t.Fatal(err)
	}
	in, err := NewIngester(reg, IngesterOpts{Tracker: tracker, MaxProcedures: 100, MaxFamilies: 4, Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	socks, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = testkit.QuietLog()
	l, err := NewListener(reg, socks, in, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { tracker.Run(ctx); done <- struct{}{} }()
	go func() { l.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &logFixture{reg: reg, addr: socks.Addr().String()}
}

func (f *logFixture) dial(t *testing.T, network string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, lines ...string) {
	t.Helper()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
}

// value reads a counter, gauge or summary count from the registry; -1 when
// the series does not exist.
func (f *logFixture) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Summary != nil:
		return float64(m.GetSummary().GetSampleCount())
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

// sum reads the sum of a summary series; -1 when it does not exist.
func (f *logFixture) sum(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := testkit.FindMetric(t, f.reg, name, labels...)
	if m == nil || m.Summary == nil {
		return -1
	}
	return m.GetSummary().GetSampleSum()
}

func (f *logFixture) waitFor(t *testing.T, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := f.value(t, name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestUDPSendersReusingIDsNeverCollide(t *testing.T) {
	f := startListener(t, 300*time.Millisecond, 0)
	a, b := f.dial(t, "udp"), f.dial(t, "udp")
	// Both PHP processes number their calls from 1.
	send(t, a, testkit.LogLine("wamp", "out", `[48,1,{},"hello1"]`))
	send(t, b, testkit.LogLine("wamp", "out", `[48,1,{},"hello2"]`))
	f.waitFor(t, 2, "wamp_out_calls_in_flight")
	// Two lines in one datagram.
	send(t, a, testkit.LogLine("wamp", "out", `[50,1,{},["hi"]]`), testkit.LogLine("wamp", "out", `[48,2,{},"hello1"]`))
	send(t, b, testkit.LogLine("wamp", "out", `[8,48,1,{},"app.error.hello"]`))
	send(t, a, testkit.LogLine("wamp", "out", `[50,2,{"progress":true},[1]]`), testkit.LogLine("wamp", "out", `[50,2,{},[2]]`))
	f.waitFor(t, 2, "wamp_out_responses_seconds", "message", "hello1")
	f.waitFor(t, 1, "wamp_out_errors_seconds", "message", "hello2")
	f.waitFor(t, 0, "wamp_out_responses_seconds", "message", "hello2")
	f.waitFor(t, 0, "wamp_out_calls_in_flight")
	f.waitFor(t, 2, "wamp_observer_log_senders")
	f.waitFor(t, 7, "wamp_observer_log_lines_total", "transport", "udp")
}

func TestCalleeViewAndV1Frames(t *testing.T) {
	f := startListener(t, 100*time.Millisecond, 0)
	c := f.dial(t, "udp")
	send(t, c,
		// A callee that logs its registration, then invocations without
		// details.procedure, as routers send them for exact registrations.
		testkit.LogLine("wamp", "in", `[64,1,{},"hello7"]`),
		testkit.LogLine("wamp", "in", `[65,1,555]`),
		testkit.LogLine("wamp", "in", `[68,10,555,{},["x"]]`),
		testkit.LogLine("wamp", "in", `[70,10,{},["y"]]`),
		testkit.LogLine("wamp", "in", `[68,11,555,{"procedure":"hello8"}]`),
		testkit.LogLine("wamp", "in", `[69,11,{"mode":"killnowait","reason":"wamp.error.timeout"}]`),
		testkit.LogLine("wamp", "in", `[68,12,556,{}]`), // unknown registration
		// The original synthetic writer: v1 frames, string ids.
		testkit.LogLine("wamp", "v1", `[2,"a1","hello9",{"msg":"x"}]`),
		testkit.LogLine("wamp", "v1", `[3,"a1",{"msg":"y"}]`),
		testkit.LogLine("wamp", "v1", `[2,"a2","hello9",{"msg":"x"}]`),
		testkit.LogLine("wamp", "v1", `[4,"a2","app.error","z"]`),
		testkit.LogLine("wamp", "v1", `[2,"a3","hello9",{"msg":"x"}]`), // never answered
	)
	f.waitFor(t, 1, "wamp_in_responses_seconds", "message", "hello7")
	f.waitFor(t, 1, "wamp_in_timeouts_seconds", "message", "hello8")
	f.waitFor(t, 1, "wamp_observer_log_bad_lines_total", "reason", ReasonNoProcedure)
	f.waitFor(t, 1, "wamp_v1_responses_seconds", "message", "hello9")
	f.waitFor(t, 1, "wamp_v1_errors_seconds", "message", "hello9")
	f.waitFor(t, 1, "wamp_v1_timeouts_seconds", "message", "hello9")
	f.waitFor(t, 0, "wamp_observer_log_calls_pending")
}

func TestTCPLinesLongLinesAndBadLines(t *testing.T) {
	f := startListener(t, 300*time.Millisecond, 256)
	c := f.dial(t, "tcp")
	send(t, c,
		testkit.LogLine("wamp", "out", `[48,1,{},"hello1"]`),
		strings.Repeat("x", 1000), // over the 256-byte limit
		"not json",
		testkit.LogLine("Wamp", "out", `[48,2,{},"hello1"]`),
		testkit.LogLine("wamp", "router", `[48,3,{},"hello1"]`), // wamp_router_* is the router's
		testkit.LogLine("wamp", "out", `[50,1,{},[]]`),
	)
	// The original class's last line may lack its newline.
	if _, err := c.Write([]byte(testkit.LogLine("wamp", "out", `[48,4,{},"hello1"]`) + "\n" + testkit.LogLine("wamp", "out", `[50,4,{},[]]`))); err != nil {
		t.Fatal(err)
	}
	c.Close()
	f.waitFor(t, 2, "wamp_out_responses_seconds", "message", "hello1")
	f.waitFor(t, 1, "wamp_observer_log_bad_lines_total", "reason", ReasonTooLong)
	f.waitFor(t, 1, "wamp_observer_log_bad_lines_total", "reason", ReasonNotJSON)
	f.waitFor(t, 1, "wamp_observer_log_bad_lines_total", "reason", ReasonBadName)
	f.waitFor(t, 1, "wamp_observer_log_bad_lines_total", "reason", ReasonFamilyConflict)
	f.waitFor(t, 8, "wamp_observer_log_lines_total", "transport", "tcp")
	f.waitFor(t, 0, "wamp_observer_log_tcp_connections")
	f.waitFor(t, 0, "wamp_observer_log_senders")
}

func TestTooManyFamilies(t *testing.T) {
	f := startListener(t, 300*time.Millisecond, 0)
	c := f.dial(t, "udp")
	for _, dir := range []string{"one", "two", "three", "four", "five", "six"} { // the fixture allows 4
		send(t, c, testkit.LogLine("wamp", dir, `[48,1,{},"p"]`))
	}
	f.waitFor(t, 2, "wamp_observer_log_bad_lines_total", "reason", ReasonTooManyFamilies)
	if got := f.value(t, "wamp_e_calls_in_flight"); got != -1 {
		t.Errorf("a fifth family was created")
	}
}

func TestEveryBadLineReasonStartsAtZero(t *testing.T) {
	f := startListener(t, time.Second, 0)
	for _, r := range BadLineReasons() {
		if got := f.value(t, "wamp_observer_log_bad_lines_total", "reason", r); got != 0 {
			t.Errorf("reason %s: %v, want a zero series", r, got)
		}
	}
	problems, err := testutil.GatherAndLint(f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// A TCP line is timed when the read that delivered it returned, not when
// the connection went idle before it: a call answered 100 ms after it was
// logged, on a connection quiet for a second before, took 100 ms.
func TestTCPLinesAreTimedByTheReadThatDeliveredThem(t *testing.T) {
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	f := startListenerWithClock(t, 300*time.Millisecond, 0, clock.Now)
	c := f.dial(t, "tcp")
	f.waitFor(t, 1, "wamp_observer_log_tcp_connections")
	clock.Advance(time.Second) // the connection idles
	send(t, c, testkit.LogLine("wamp", "out", `[48,1,{},"hello1"]`))
	f.waitFor(t, 1, "wamp_out_calls_in_flight")
	clock.Advance(100 * time.Millisecond)
	send(t, c, testkit.LogLine("wamp", "out", `[50,1,{},["hi"]]`))
	f.waitFor(t, 1, "wamp_out_responses_seconds", "message", "hello1")
	if got := f.sum(t, "wamp_out_responses_seconds", "message", "hello1"); got != 0.1 {
		t.Errorf("response time %vs, want 0.1s", got)
	}
	if got := f.value(t, "wamp_out_timeouts_seconds", "message", "hello1"); got != 0 {
		t.Errorf("%v timeouts, want 0", got)
	}
}

// originalWriterTraffic is what the original tool's writer.php logs, line
// for line: calls [2, uniqid, "helloN", {...}], answers [3, id, {...}] and
// errors [4, id, {...}] whose third element is an object, not an error
// URI. Every seventh call goes unanswered, every fifth answer is an error.
// It returns the lines and the outcomes they must produce per message.
func originalWriterTraffic(calls int) (lines []string, want map[string][numOutcomes]int) {
	want = map[string][numOutcomes]int{}
	for i := range calls {
		id := fmt.Sprintf("%013x", 0x692dbe1a00000+i) // as PHP's uniqid()
		procedure := fmt.Sprintf("hello%d", i%9+1)
		lines = append(lines, testkit.LogLine("wamp", "in", fmt.Sprintf(`[2,"%s","%s",{"msg":"hello world%d request details"}]`, id, procedure, i)))
		counts := want[procedure]
		switch {
		case i%7 == 3:
			counts[metrics.Timeout]++
		case i%5 == 2:
			lines = append(lines, testkit.LogLine("wamp", "in", fmt.Sprintf(`[4,"%s",{"msg":"hello world%d error details"}]`, id, i)))
			counts[metrics.Error]++
		default:
			lines = append(lines, testkit.LogLine("wamp", "in", fmt.Sprintf(`[3,"%s",{"msg":"hello world%d reply details"}]`, id, i)))
			counts[metrics.Response]++
		}
		want[procedure] = counts
	}
	return lines, want
}

// The original writer's exact lines give exact counts over both
// transports. Over TCP the writer closes its connection with calls still
// unanswered: those never got an answer, so they are timeouts, as in the
// original tool, not forgotten.
func TestOriginalWriterLinesCountExactly(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
			f := startListenerWithClock(t, 300*time.Millisecond, 0, clock.Now)
			lines, want := originalWriterTraffic(90)
			c := f.dial(t, network)
			for _, l := range lines {
				send(t, c, l)
			}
			f.waitFor(t, float64(len(lines)), "wamp_observer_log_lines_total", "transport", network)
			if network == "tcp" {
				c.Close()
				f.waitFor(t, 0, "wamp_observer_log_tcp_connections")
			}
			clock.Advance(301 * time.Millisecond)
			f.waitFor(t, 0, "wamp_observer_log_calls_pending")
			for procedure, counts := range want {
				for o := range numOutcomes {
					if got := f.value(t, "wamp_in_"+o.String()+"_seconds", "message", procedure); got != float64(counts[o]) {
						t.Errorf("%s %v: %v, want %d", procedure, o, got, counts[o])
					}
				}
			}
			if got := f.value(t, "wamp_observer_log_bad_lines_total", "reason", ReasonWrongType); got != 0 {
				t.Errorf("%v lines refused", got)
			}
		})
	}
}

// Idle TCP connections used to hold every place for good (1,024 of them
// locked every sender out). A connection that delivers nothing for the
// idle timeout is closed and counted; its pending call then ends as a
// timeout, as on any close. A connection that keeps logging stays open,
// and once the idlers are gone new connections are served.
func TestIdleTCPConnectionsAreClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	f := startListenerWith(t, 100*time.Millisecond, nil, ListenerOpts{MaxConns: 8, IdleTimeout: idle})
	active := f.dial(t, "tcp")
	send(t, active, testkit.LogLine("wamp", "out", `[48,1,{},"busy"]`), testkit.LogLine("wamp", "out", `[50,1,{},[]]`))
	f.waitFor(t, 1, "wamp_out_responses_seconds", "message", "busy")
	idlers := make([]net.Conn, 7)
	for i := range idlers {
		idlers[i] = f.dial(t, "tcp")
	}
	send(t, idlers[0], testkit.LogLine("wamp", "out", `[48,1,{},"idler"]`)) // then silence
	f.waitFor(t, 8, "wamp_observer_log_tcp_connections")
	f.dial(t, "tcp") // all places taken
	f.waitFor(t, 1, "wamp_observer_log_tcp_refused_total")

	// The active sender writes well within the idle timeout, for more
	// than twice its length, while the idlers time out.
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	for id := 2; id < 2+10; id++ {
		<-tick.C
		send(t, active, testkit.LogLine("wamp", "out", fmt.Sprintf(`[48,%d,{},"busy"]`, id)), testkit.LogLine("wamp", "out", fmt.Sprintf(`[50,%d,{},[]]`, id)))
	}
	f.waitFor(t, 7, "wamp_observer_log_tcp_idle_closed_total")
	f.waitFor(t, 1, "wamp_observer_log_tcp_connections")
	f.waitFor(t, 11, "wamp_out_responses_seconds", "message", "busy")
	f.waitFor(t, 1, "wamp_out_timeouts_seconds", "message", "idler")

	late := f.dial(t, "tcp")
	send(t, late, testkit.LogLine("wamp", "out", `[48,1,{},"late"]`), testkit.LogLine("wamp", "out", `[50,1,{},[]]`))
	f.waitFor(t, 1, "wamp_out_responses_seconds", "message", "late")
	f.waitFor(t, 1, "wamp_observer_log_tcp_refused_total")
	f.waitFor(t, 7, "wamp_observer_log_tcp_idle_closed_total")
	f.waitFor(t, 0, "wamp_out_calls_in_flight")
}
