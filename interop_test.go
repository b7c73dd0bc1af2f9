package observer_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// The interop tests put a WAMP client nobody here wrote, Autobahn|JS
// (testdata/autobahn, pinned by its package-lock.json), against the router,
// nexus's Go client and our PHP client, and check the router's counts
// against what each side saw.

const autobahnDir = "testdata/autobahn"

// TestAutobahnCallerToGoCallee: Autobahn|JS calls procedures of nexus's Go
// client through the router, over each serializer, and gets results, an
// application error, the dealer's timeout of its CALL timeout option and
// progressive results; the router counts exactly those calls.
func TestAutobahnCallerToGoCallee(t *testing.T) {
	ab := harness.RequireAutobahn(t, autobahnDir)
	const deadline = 5 * time.Second // far beyond any answer: only the dealer times out
	eachDeployment(t, harness.Config{Timeout: deadline}, func(t *testing.T, in *harness.Instance) {

		callee := in.Connect(t, serialize.JSON)
		var mu sync.Mutex
		echoed := map[string]int{} // the first argument of each echo invocation
		var interrupted atomic.Int64
		handlers := map[string]client.InvocationHandler{
			"interop.echo": func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
				if len(inv.Arguments) == 1 {
					if s, ok := inv.Arguments[0].(string); ok {
						mu.Lock()
						echoed[s]++
						mu.Unlock()
					}
				}
				return client.InvokeResult{Args: inv.Arguments}
			},
			"interop.fail": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Err: "app.error.interop", Args: wamp.List{"as asked"}, Kwargs: wamp.Dict{"why": "test"}}
			},
			"interop.hang": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
				<-ctx.Done() // the dealer's INTERRUPT when the CALL timeout option expires
				interrupted.Add(1)
				return client.InvocationCanceled
			},
			"interop.progress": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
				for i := range 3 {
					if err := callee.SendProgress(ctx, wamp.List{i}, nil); err != nil {
						return client.InvokeResult{Err: "app.error.progress", Args: wamp.List{err.Error()}}
					}
				}
				return client.InvokeResult{Args: wamp.List{"done"}}
			},
		}
		for proc, h := range handlers {
			if err := callee.Register(proc, h, nil); err != nil {
				t.Fatalf("register %s: %v", proc, err)
			}
		}

		// Results, over each of Autobahn's serializers.
		for _, run := range []struct {
			serializer string
			calls      uint64
		}{{"json", 20}, {"msgpack", 10}, {"cbor", 10}} {
			s := ab.Call(t, in, "--procedure=interop.echo", fmt.Sprint("--calls=", run.calls),
				"--concurrency=4", "--arg=hi-"+run.serializer, "--serializer="+run.serializer)
			if s.Calls != run.calls || s.Results != run.calls || len(s.Errors) != 0 {
				t.Errorf("echo over %s: %d calls, %d results, errors %v; want %d results", run.serializer, s.Calls, s.Results, s.Errors, run.calls)
			}
			mu.Lock()
			if got := echoed["hi-"+run.serializer]; got != int(run.calls) {
				t.Errorf("echo over %s: the Go callee got the argument %d times, want %d (got %v)", run.serializer, got, run.calls, echoed)
			}
			mu.Unlock()
		}
		// An application error, with arguments and keyword arguments.
		s := ab.Call(t, in, "--procedure=interop.fail", "--calls=7")
		if want := map[string]uint64{"app.error.interop": 7}; !maps.Equal(s.Errors, want) {
			t.Errorf("interop.fail: errors %v, want %v", s.Errors, want)
		}
		// The CALL timeout option: the dealer answers wamp.error.timeout and
		// interrupts the Go callee.
		s = ab.Call(t, in, "--procedure=interop.hang", "--calls=3", "--concurrency=3", "--timeout=100")
		if want := map[string]uint64{"wamp.error.timeout": 3}; !maps.Equal(s.Errors, want) {
			t.Errorf("interop.hang: errors %v, want %v", s.Errors, want)
		}
		testkit.Eventually(t, 10*time.Second, "3 interrupted invocations", func() (any, bool) {
			n := interrupted.Load()
			return n, n == 3
		})
		// Progressive results: 3 each, then the final result.
		s = ab.Call(t, in, "--procedure=interop.progress", "--calls=2", "--progress")
		if s.Results != 2 || s.Progress != 6 || len(s.Errors) != 0 {
			t.Errorf("interop.progress: %d results, %d progressive, errors %v; want 2, 6, none", s.Results, s.Progress, s.Errors)
		}
		// A procedure nobody registered.
		s = ab.Call(t, in, "--procedure=nobody.registered", "--calls=4")
		if want := map[string]uint64{"wamp.error.no_such_procedure": 4}; !maps.Equal(s.Errors, want) {
			t.Errorf("nobody.registered: errors %v, want %v", s.Errors, want)
		}

		// Every caller has left with GOODBYE: only the Go callee's session is open.
		var got *harness.Scrape
		testkit.Eventually(t, 10*time.Second, "idle with one session", func() (any, bool) {
			got = in.Scrape(t)
			inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
			sessions, ok2 := got.Gauge("wamp_router_sessions")
			return fmt.Sprintf("%v calls in flight, %v sessions", inFlight, sessions), ok1 && ok2 && inFlight == 0 && sessions == 1
		})
		want := map[string][3]uint64{ // responses, errors, timeouts
			"interop.echo":      {40, 0, 0},
			"interop.fail":      {0, 7, 0},
			"interop.hang":      {0, 0, 3},
			"interop.progress":  {2, 0, 0},
			"nobody.registered": {0, 4, 0},
		}
		var totals [3]uint64
		for msg, counts := range want {
			for i, outcome := range outcomes {
				count, _, ok := got.Summary("wamp_router_"+outcome+"_seconds", "message", msg)
				if !ok {
					t.Errorf("%s %s: no series", msg, outcome)
				} else if count != counts[i] {
					t.Errorf("%s %s: count %d, want %d", msg, outcome, count, counts[i])
				}
				totals[i] += counts[i]
			}
		}
		// Nothing else was counted, and the histograms hold the same calls.
		for i, outcome := range outcomes {
			if n, _ := got.SummaryTotal("wamp_router_" + outcome + "_seconds"); n != totals[i] {
				t.Errorf("%s: %d in all, want %d", outcome, n, totals[i])
			}
			if h, _ := got.Histogram("wamp_router_" + outcome + "_total_seconds"); h.GetSampleCount() != totals[i] {
				t.Errorf("%s histogram: %d, want %d", outcome, h.GetSampleCount(), totals[i])
			}
		}
		// The dealer's timeouts come after the 100ms option, long before ours.
		if _, sum, _ := got.Summary("wamp_router_timeouts_seconds", "message", "interop.hang"); sum < 0.3 || sum >= 3*0.5 {
			t.Errorf("interop.hang timeouts sum %gs, want three calls of 100ms..500ms", sum)
		}
	})
}

// TestAutobahnCalleeServesPHPWriter: our PHP client calls a foreign callee,
// Autobahn|JS, through the router. The callee answers at once, but hello9
// always with an error, hello8 past the writers' CALL timeout of 300ms
// (the dealer times those out; Autobahn does not announce call canceling,
// so it gets no INTERRUPT), and hello7 with 30000 bytes of 4-byte
// characters (several WebSocket frames split inside characters). The
// writers' summaries, their logs and the router must agree exactly.
func TestAutobahnCalleeServesPHPWriter(t *testing.T) {
	ab := harness.RequireAutobahn(t, autobahnDir)
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})
	env := []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + harness.Realm, "WAMP_OBSERVER_ADDR=" + in.LogAddr}

	callee := ab.Start(t, env, "callee.js", "--fail=hello9", "--slow=hello8", "--slow-ms=400",
		"--big=hello7", "--big-bytes=30000")
	callee.WaitLine(`{"event":"registered"`, 10*time.Second)

	const writers, calls = 4, 50
	var procs []*harness.Process
	for range writers {
		procs = append(procs, harness.StartPHP(t, append(env, fmt.Sprint("WRITER_CALLS=", calls)), "php/writer.php"))
	}
	var results, errs, timeouts uint64
	for _, w := range procs {
		line := w.WaitLine("writer:", 60*time.Second)
		w.ExitsCleanly()
		t.Log(line)
		var n, r, e, to uint64
		if _, err := fmt.Sscanf(line, "writer: %d calls, %d results, %d errors, %d timeouts", &n, &r, &e, &to); err != nil {
			t.Fatalf("writer summary %q: %v", line, err)
		}
		if n != calls || r+e+to != calls {
			t.Errorf("writer: %d calls, %d results, %d errors, %d timeouts; want %d calls, each ending once", n, r, e, to, calls)
		}
		results += r
		errs += e
		timeouts += to
	}

	// The writers have left; their log lines are on their way over UDP.
	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "every logged call ended", func() (any, bool) {
		got = in.Scrape(t)
		var logged uint64
		for _, o := range outcomes {
			n, _ := got.SummaryTotal("wamp_out_" + o + "_seconds") // none yet: 0
			logged += n
		}
		inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
		pending, ok2 := got.Gauge("wamp_observer_log_calls_pending")
		sessions, ok3 := got.Gauge("wamp_router_sessions")
		return fmt.Sprintf("%d logged calls ended, %v calls in flight, %v log calls pending, %v sessions", logged, inFlight, pending, sessions),
			logged == writers*calls && ok1 && ok2 && ok3 && inFlight == 0 && pending == 0 && sessions == 1
	})
	badLines, _ := got.Family("wamp_observer_log_bad_lines_total")
	for _, m := range badLines.GetMetric() {
		if v := m.GetCounter().GetValue(); v != 0 {
			t.Errorf("%v bad log lines %v", v, m.GetLabel())
		}
	}
	for _, h := range hellos {
		for _, o := range outcomes {
			router, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", h) // no series: 0
			caller, _, _ := got.Summary("wamp_out_"+o+"_seconds", "message", h)
			if router != caller {
				t.Errorf("%s %s: router %d, PHP caller's log %d", h, o, router, caller)
			}
		}
		// Each procedure ends its calls one way only.
		want := map[string]string{"hello8": "timeouts", "hello9": "errors"}[h]
		if want == "" {
			want = "responses"
		}
		for _, o := range outcomes {
			if n, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", h); o != want && n != 0 {
				t.Errorf("%s: %d %s, want only %s", h, n, o, want)
			}
		}
	}
	for o, want := range map[string]uint64{"responses": results, "errors": errs, "timeouts": timeouts} {
		if n, _ := got.SummaryTotal("wamp_router_" + o + "_seconds"); n != want {
			t.Errorf("router %s: %d, the writers' summaries %d", o, n, want)
		}
	}

	cs := harness.ParseSummary[harness.CalleeSummary](t, callee.Stop(harness.SummaryPrefix))
	if cs.Invocations != writers*calls || cs.Errors != errs {
		t.Errorf("the Autobahn callee: %d invocations, %d errors; the writers: %d calls, %d errors",
			cs.Invocations, cs.Errors, writers*calls, errs)
	}
}

// TestAutobahnCallerToPHPCallee: Autobahn|JS calls our PHP callee, which
// answers like the original tool (some late, some never, a few errors):
// first with the CALL timeout option the PHP writer uses, which the dealer
// enforces with INTERRUPT (killnowait); then with no timeout but a CANCEL
// (mode kill) after 50ms, which the PHP callee must answer with ERROR
// wamp.error.canceled. The router, the Autobahn caller and the PHP
// callee's log count the same answers.
func TestAutobahnCallerToPHPCallee(t *testing.T) {
	ab := harness.RequireAutobahn(t, autobahnDir)
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})
	env := []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + harness.Realm, "WAMP_OBSERVER_ADDR=" + in.LogAddr}

	callee := harness.StartPHP(t, env, "php/callee.php")
	callee.WaitLine("callee: registered", 10*time.Second)

	const timedCalls, cancelledCalls = 270, 90
	procs := "--procedure=" + strings.Join(hellos, ",")
	// 250 ms, not the callee's 300: its slow answers leave 305-310 ms after
	// the INVOCATION, and one that left before the dealer's INTERRUPT
	// reached a lagging callee is a response in its log and a timeout for
	// the caller, a real difference of view (see TestRouterCallerAndCalleeAgree).
	timed := ab.Call(t, in, procs, fmt.Sprint("--calls=", timedCalls), "--concurrency=12", "--timeout=250")
	cancelled := ab.Call(t, in, procs, fmt.Sprint("--calls=", cancelledCalls), "--concurrency=12", "--cancel-after=50")
	for _, run := range []struct {
		name    string
		s       harness.CallerSummary
		calls   uint64
		allowed []string
	}{
		{"timeout=250", timed, timedCalls, []string{"app.error.hello", "wamp.error.timeout"}},
		{"cancel-after=50", cancelled, cancelledCalls, []string{"app.error.hello", "wamp.error.canceled"}},
	} {
		ended := run.s.Results
		for uri, n := range run.s.Errors {
			if !slices.Contains(run.allowed, uri) {
				t.Errorf("%s: %d errors %s, want only %v", run.name, n, uri, run.allowed)
			}
			ended += n
		}
		if run.s.Calls != run.calls || ended != run.calls {
			t.Errorf("%s: %d calls, %d results, errors %v; want %d calls, each ending once", run.name, run.s.Calls, run.s.Results, run.s.Errors, run.calls)
		}
	}
	const calls = timedCalls + cancelledCalls
	results := timed.Results + cancelled.Results
	appErrors := timed.Errors["app.error.hello"] + cancelled.Errors["app.error.hello"]
	timeouts := timed.Errors["wamp.error.timeout"]
	canceled := cancelled.Errors["wamp.error.canceled"]

	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "every call ended in the router and in the callee's log", func() (any, bool) {
		got = in.Scrape(t)
		var logged uint64
		for _, o := range outcomes {
			n, _ := got.SummaryTotal("wamp_in_" + o + "_seconds") // none yet: 0
			logged += n
		}
		inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
		pending, ok2 := got.Gauge("wamp_observer_log_calls_pending")
		sessions, ok3 := got.Gauge("wamp_router_sessions")
		return fmt.Sprintf("%d logged calls ended, %v calls in flight, %v log calls pending, %v sessions", logged, inFlight, pending, sessions),
			logged == calls && ok1 && ok2 && ok3 && inFlight == 0 && pending == 0 && sessions == 1
	})
	badLines, _ := got.Family("wamp_observer_log_bad_lines_total")
	for _, m := range badLines.GetMetric() {
		if v := m.GetCounter().GetValue(); v != 0 {
			t.Errorf("%v bad log lines %v", v, m.GetLabel())
		}
	}
	for _, h := range hellos {
		for _, o := range []string{"responses", "errors"} {
			router, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", h) // no series: 0
			calleeLog, _, _ := got.Summary("wamp_in_"+o+"_seconds", "message", h)
			if router != calleeLog {
				t.Errorf("%s %s: router %d, PHP callee's log %d", h, o, router, calleeLog)
			}
		}
		var router uint64
		for _, o := range outcomes {
			n, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", h)
			router += n
		}
		if want := timed.Procedures[h].Calls + cancelled.Procedures[h].Calls; router != want {
			t.Errorf("%s: router counted %d calls, the caller made %d", h, router, want)
		}
	}
	for o, want := range map[string]uint64{"responses": results, "errors": appErrors + canceled, "timeouts": timeouts} {
		if n, _ := got.SummaryTotal("wamp_router_" + o + "_seconds"); n != want {
			t.Errorf("router %s: %d, the Autobahn caller saw %d", o, n, want)
		}
	}
	t.Logf("%d calls: %d results, %d errors, %d timeouts, %d cancelled", calls, results, appErrors, timeouts, canceled)

	line := callee.Stop("callee:")
	t.Log(line)
	var invocations uint64
	if _, err := fmt.Sscanf(line, "callee: %d invocations", &invocations); err != nil || invocations != calls {
		t.Errorf("PHP callee summary %q: want %d invocations", line, calls)
	}
}
