package observer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/app"
)

// The interop tests put a WAMP client nobody here wrote, Autobahn|JS
// (testdata/autobahn, pinned by its package-lock.json), against the router,
// nexus's Go client and our PHP client, and check the router's counts
// against what each side saw.

const autobahnDir = "testdata/autobahn"

// requireAutobahn returns the node binary, or skips the test when Node.js
// or the installed Autobahn|JS is missing.
func requireAutobahn(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH: install Node.js (Debian: apt-get install nodejs npm), then npm ci in " + autobahnDir)
	}
	if _, err := os.Stat(filepath.Join(autobahnDir, "node_modules", "autobahn", "package.json")); err != nil {
		t.Skip("Autobahn|JS not installed: run npm ci in " + autobahnDir)
	}
	return node
}

func startNode(t *testing.T, node string, env []string, script string, args ...string) *process {
	t.Helper()
	return startProcess(t, env, node, append([]string{filepath.Join(autobahnDir, script)}, args...)...)
}

// callerSummary is the line caller.js prints last.
type callerSummary struct {
	Calls      uint64            `json:"calls"`
	Results    uint64            `json:"results"`
	Progress   uint64            `json:"progress"` // progressive results received
	Errors     map[string]uint64 `json:"errors"`   // by error URI
	Procedures map[string]struct {
		Calls   uint64            `json:"calls"`
		Results uint64            `json:"results"`
		Errors  map[string]uint64 `json:"errors"`
	} `json:"procedures"`
	Failure string `json:"failure"`
}

// calleeSummary is the line callee.js prints last.
type calleeSummary struct {
	Invocations uint64 `json:"invocations"`
	Results     uint64 `json:"results"`
	Errors      uint64 `json:"errors"`
}

const summaryLine = `{"event":"summary"`

func parseSummary[S any](t *testing.T, line string) S {
	t.Helper()
	var s S
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		t.Fatalf("summary %q: %v", line, err)
	}
	return s
}

// callAutobahn runs caller.js with args against in, waits for it to leave
// and exit 0, and returns what it saw.
func callAutobahn(t *testing.T, node string, in *instance, args ...string) callerSummary {
	t.Helper()
	p := startNode(t, node, []string{"WAMP_URL=" + in.wampURL, "WAMP_REALM=realm1"}, "caller.js", args...)
	line := p.waitLine(summaryLine, 60*time.Second)
	p.exitsCleanly()
	s := parseSummary[callerSummary](t, line)
	if s.Failure != "" {
		t.Fatalf("caller.js %v: %s", args, s.Failure)
	}
	t.Logf("caller.js %s: %s", strings.Join(args, " "), line)
	return s
}

// wantErrors checks an errors-by-URI tally.
func wantErrors(t *testing.T, what string, got, want map[string]uint64) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: errors %v, want %v", what, got, want)
	}
}

// settle polls the scrape until cond holds, for at most timeout, and
// returns the last scrape either way: when it never held, the test has
// failed and the caller's assertions show what differs.
func settle(t *testing.T, in *instance, timeout time.Duration, what string, cond func(scrapeResult) bool) scrapeResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := scrapeResult(in.scrape(t, "/metrics"))
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("still not %s after %v", what, timeout)
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAutobahnCallerToGoCallee: Autobahn|JS calls procedures of nexus's Go
// client through the router, over each serializer, and gets results, an
// application error, the dealer's timeout of its CALL timeout option and
// progressive results; the router counts exactly those calls.
func TestAutobahnCallerToGoCallee(t *testing.T) {
	node := requireAutobahn(t)
	const deadline = 5 * time.Second // far beyond any answer: only the dealer times out
	in := startInstance(t, app.Config{CallTimeout: deadline})

	callee := in.connect(t, serialize.JSON)
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
		s := callAutobahn(t, node, in, "--procedure=interop.echo", fmt.Sprint("--calls=", run.calls),
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
	s := callAutobahn(t, node, in, "--procedure=interop.fail", "--calls=7")
	wantErrors(t, "interop.fail", s.Errors, map[string]uint64{"app.error.interop": 7})
	// The CALL timeout option: the dealer answers wamp.error.timeout and
	// interrupts the Go callee.
	s = callAutobahn(t, node, in, "--procedure=interop.hang", "--calls=3", "--concurrency=3", "--timeout=100")
	wantErrors(t, "interop.hang", s.Errors, map[string]uint64{"wamp.error.timeout": 3})
	waitFor(t, "3 interrupted invocations", func() bool { return interrupted.Load() == 3 })
	// Progressive results: 3 each, then the final result.
	s = callAutobahn(t, node, in, "--procedure=interop.progress", "--calls=2", "--progress")
	if s.Results != 2 || s.Progress != 6 || len(s.Errors) != 0 {
		t.Errorf("interop.progress: %d results, %d progressive, errors %v; want 2, 6, none", s.Results, s.Progress, s.Errors)
	}
	// A procedure nobody registered.
	s = callAutobahn(t, node, in, "--procedure=nobody.registered", "--calls=4")
	wantErrors(t, "nobody.registered", s.Errors, map[string]uint64{"wamp.error.no_such_procedure": 4})

	// Every caller has left with GOODBYE: only the Go callee's session is open.
	got := settle(t, in, 10*time.Second, "idle with one session", func(s scrapeResult) bool {
		return s.gauge("wamp_router_calls_in_flight") == 0 && s.gauge("wamp_router_sessions") == 1
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
			count, _, ok := got.summary("wamp_router_"+outcome+"_seconds", msg)
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
		if n := got.total("wamp_router_" + outcome + "_seconds"); n != totals[i] {
			t.Errorf("%s: %d in all, want %d", outcome, n, totals[i])
		}
		if h := got.histogram("wamp_router_" + outcome + "_total_seconds"); h.GetSampleCount() != totals[i] {
			t.Errorf("%s histogram: %d, want %d", outcome, h.GetSampleCount(), totals[i])
		}
	}
	// The dealer's timeouts come after the 100ms option, long before ours.
	if _, sum, _ := got.summary("wamp_router_timeouts_seconds", "interop.hang"); sum < 0.3 || sum >= 3*0.5 {
		t.Errorf("interop.hang timeouts sum %gs, want three calls of 100ms..500ms", sum)
	}
}

// TestAutobahnCalleeServesPHPWriter: our PHP client calls a foreign callee,
// Autobahn|JS, through the router. The callee answers at once, but hello9
// always with an error, hello8 past the writers' CALL timeout of 300ms
// (the dealer times those out; Autobahn does not announce call canceling,
// so it gets no INTERRUPT), and hello7 with 30000 bytes of 4-byte
// characters (several WebSocket frames split inside characters). The
// writers' summaries, their logs and the router must agree exactly.
func TestAutobahnCalleeServesPHPWriter(t *testing.T) {
	node := requireAutobahn(t)
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: 300 * time.Millisecond})
	env := []string{"WAMP_URL=" + in.wampURL, "WAMP_REALM=realm1", "WAMP_OBSERVER_ADDR=" + logAddr}

	callee := startNode(t, node, env, "callee.js", "--fail=hello9", "--slow=hello8", "--slow-ms=400",
		"--big=hello7", "--big-bytes=30000")
	callee.waitLine(`{"event":"registered"`, 10*time.Second)

	const writers, calls = 4, 50
	var procs []*process
	for range writers {
		procs = append(procs, startPHP(t, append(env, fmt.Sprint("WRITER_CALLS=", calls)), "php/writer.php"))
	}
	var results, errs, timeouts uint64
	for _, w := range procs {
		line := w.waitLine("writer:", 60*time.Second)
		w.exitsCleanly()
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
	got := settle(t, in, 10*time.Second, "every logged call ended", func(s scrapeResult) bool {
		var logged uint64
		for _, o := range outcomes {
			logged += s.total("wamp_out_" + o + "_seconds")
		}
		return logged == writers*calls && s.gauge("wamp_router_calls_in_flight") == 0 &&
			s.gauge("wamp_observer_log_calls_pending") == 0 && s.gauge("wamp_router_sessions") == 1
	})
	for _, m := range got["wamp_observer_log_bad_lines_total"].GetMetric() {
		if v := m.GetCounter().GetValue(); v != 0 {
			t.Errorf("%v bad log lines %v", v, m.GetLabel())
		}
	}
	for _, h := range hellos {
		for _, o := range outcomes {
			router := got.count("wamp_router_"+o+"_seconds", h)
			caller := got.count("wamp_out_"+o+"_seconds", h)
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
			if n := got.count("wamp_router_"+o+"_seconds", h); o != want && n != 0 {
				t.Errorf("%s: %d %s, want only %s", h, n, o, want)
			}
		}
	}
	for o, want := range map[string]uint64{"responses": results, "errors": errs, "timeouts": timeouts} {
		if n := got.total("wamp_router_" + o + "_seconds"); n != want {
			t.Errorf("router %s: %d, the writers' summaries %d", o, n, want)
		}
	}

	cs := parseSummary[calleeSummary](t, callee.stop(summaryLine))
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
	node := requireAutobahn(t)
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: 300 * time.Millisecond})
	env := []string{"WAMP_URL=" + in.wampURL, "WAMP_REALM=realm1", "WAMP_OBSERVER_ADDR=" + logAddr}

	callee := startPHP(t, env, "php/callee.php")
	callee.waitLine("callee: registered", 10*time.Second)

	const timedCalls, cancelledCalls = 270, 90
	procs := "--procedure=" + strings.Join(hellos, ",")
	timed := callAutobahn(t, node, in, procs, fmt.Sprint("--calls=", timedCalls), "--concurrency=12", "--timeout=300")
	cancelled := callAutobahn(t, node, in, procs, fmt.Sprint("--calls=", cancelledCalls), "--concurrency=12", "--cancel-after=50")
	for _, run := range []struct {
		name    string
		s       callerSummary
		calls   uint64
		allowed []string
	}{
		{"timeout=300", timed, timedCalls, []string{"app.error.hello", "wamp.error.timeout"}},
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

	got := settle(t, in, 10*time.Second, "every call ended in the router and in the callee's log", func(r scrapeResult) bool {
		var logged uint64
		for _, o := range outcomes {
			logged += r.total("wamp_in_" + o + "_seconds")
		}
		return logged == calls && r.gauge("wamp_router_calls_in_flight") == 0 &&
			r.gauge("wamp_observer_log_calls_pending") == 0 && r.gauge("wamp_router_sessions") == 1
	})
	for _, m := range got["wamp_observer_log_bad_lines_total"].GetMetric() {
		if v := m.GetCounter().GetValue(); v != 0 {
			t.Errorf("%v bad log lines %v", v, m.GetLabel())
		}
	}
	for _, h := range hellos {
		for _, o := range []string{"responses", "errors"} {
			router := got.count("wamp_router_"+o+"_seconds", h)
			calleeLog := got.count("wamp_in_"+o+"_seconds", h)
			if router != calleeLog {
				t.Errorf("%s %s: router %d, PHP callee's log %d", h, o, router, calleeLog)
			}
		}
		var router uint64
		for _, o := range outcomes {
			router += got.count("wamp_router_"+o+"_seconds", h)
		}
		if want := timed.Procedures[h].Calls + cancelled.Procedures[h].Calls; router != want {
			t.Errorf("%s: router counted %d calls, the caller made %d", h, router, want)
		}
	}
	for o, want := range map[string]uint64{"responses": results, "errors": appErrors + canceled, "timeouts": timeouts} {
		if n := got.total("wamp_router_" + o + "_seconds"); n != want {
			t.Errorf("router %s: %d, the Autobahn caller saw %d", o, n, want)
		}
	}
	t.Logf("%d calls: %d results, %d errors, %d timeouts, %d cancelled", calls, results, appErrors, timeouts, canceled)

	line := callee.stop("callee:")
	t.Log(line)
	var invocations uint64
	if _, err := fmt.Sscanf(line, "callee: %d invocations", &invocations); err != nil || invocations != calls {
		t.Errorf("PHP callee summary %q: want %d invocations", line, calls)
	}
}
