package observer_test

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

var hellos = []string{"hello1", "hello2", "hello3", "hello4", "hello5", "hello6", "hello7", "hello8", "hello9"}

// TestRouterCallerAndCalleeAgree runs the original setup — the router, one
// PHP callee and several PHP writers — and checks that the router, the
// callers' logs and the callee's log count the same calls.
func TestRouterCallerAndCalleeAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP processes for several seconds")
	}
	eachDeployment(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true}, func(t *testing.T, in *harness.Instance) {
		env := []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + harness.Realm, "WAMP_OBSERVER_ADDR=" + in.LogAddr}
		// The callee's slow answers leave 305-310 ms after their INVOCATION.
		// Against the original 300 ms deadline, a callee whose event loop lags
		// 5 ms behind the dealer's INTERRUPT has answered before it learns of
		// it: a real difference of view (the callee answered, the caller got
		// wamp.error.timeout), not a miscount, and on a loaded machine it
		// happened about once a run. A 250 ms CALL timeout keeps every answer
		// far from the deadline, so all three views must agree exactly.
		writerEnv := append(slices.Clone(env), "WRITER_CALL_TIMEOUT_MS=250")

		callee := harness.StartPHP(t, env, "php/callee.php")
		callee.WaitLine("callee: registered", 10*time.Second)

		var writers []*harness.Process
		for range 8 {
			writers = append(writers, harness.StartPHP(t, writerEnv, "php/writer.php"))
		}
		// Run until every procedure has been called and every outcome seen,
		// at least 3 seconds; errors are 1 in 99 answered calls.
		start := time.Now()
		testkit.Eventually(t, 60*time.Second, "every procedure answered and every outcome seen", func() (any, bool) {
			s := in.Scrape(t)
			var unanswered []string
			for _, h := range hellos {
				if n, _, _ := s.Summary("wamp_router_responses_seconds", "message", h); n == 0 { // no series: none yet
					unanswered = append(unanswered, h)
				}
			}
			errs, _ := s.SummaryTotal("wamp_router_errors_seconds")
			timeouts, _ := s.SummaryTotal("wamp_router_timeouts_seconds")
			return fmt.Sprintf("unanswered %v, %d errors, %d timeouts", unanswered, errs, timeouts),
				len(unanswered) == 0 && time.Since(start) > 3*time.Second && errs > 0 && timeouts > 0
		})
		for _, w := range writers {
			t.Log(w.Stop("writer:"))
		}

		// Every call has ended: answered, or past its deadline everywhere.
		var got *harness.Scrape
		testkit.Eventually(t, 10*time.Second, "no calls pending", func() (any, bool) {
			got = in.Scrape(t)
			inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
			pending, ok2 := got.Gauge("wamp_observer_log_calls_pending")
			return fmt.Sprintf("%v calls in flight, %v log calls pending", inFlight, pending), ok1 && ok2 && inFlight == 0 && pending == 0
		})

		if bad, _ := got.CounterTotal("wamp_observer_log_bad_lines_total"); bad != 0 { // no series: none
			t.Errorf("%v bad log lines", bad)
		}
		var calls uint64
		for _, h := range hellos {
			for _, o := range outcomes {
				router, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", h) // no series: 0
				caller, _, _ := got.Summary("wamp_out_"+o+"_seconds", "message", h)
				calls += router
				if router != caller {
					t.Errorf("%s %s: router %d, caller's log %d", h, o, router, caller)
				}
				// The router's view of the callee (from the INVOCATION it sent
				// to the YIELD or ERROR it got) is the callee's own view of
				// the call: the same deadline rule, timeouts included.
				calleeSide, _, _ := got.Summary("wamp_router_callee_"+o+"_seconds", "message", h)
				if inLog, _, _ := got.Summary("wamp_in_"+o+"_seconds", "message", h); calleeSide != inLog {
					t.Errorf("%s %s: router's callee side %d, callee's log %d", h, o, calleeSide, inLog)
				}
				if o == "timeouts" {
					continue // the callee's view of a timeout is its own deadline
				}
				if calleeCount, _, _ := got.Summary("wamp_in_"+o+"_seconds", "message", h); router != calleeCount {
					t.Errorf("%s %s: router %d, callee's log %d", h, o, router, calleeCount)
				}
			}
		}
		responses, _ := got.SummaryTotal("wamp_router_responses_seconds")
		errs, _ := got.SummaryTotal("wamp_router_errors_seconds")
		timeouts, _ := got.SummaryTotal("wamp_router_timeouts_seconds")
		t.Logf("%d calls, %d responses, %d errors, %d timeouts", calls, responses, errs, timeouts)
		t.Log(callee.Stop("callee:"))
	})
}

// TestUDPWriterKeepsTheSeedsProportions runs the original synthetic writer
// over UDP, with no router involved, and checks the proportions of its
// outcomes against its distribution.
func TestUDPWriterKeepsTheSeedsProportions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP processes for several seconds")
	}
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})
	env := []string{"WAMP_OBSERVER_ADDR=" + in.LogAddr}
	var writers []*harness.Process
	for range 6 {
		writers = append(writers, harness.StartPHP(t, env, "php/writer.php", "--udp"))
	}
	// ended is how many logged calls ended; no series: none yet.
	ended := func(s *harness.Scrape) (responses, errs, timeouts float64) {
		r, _ := s.SummaryTotal("wamp_in_responses_seconds")
		e, _ := s.SummaryTotal("wamp_in_errors_seconds")
		to, _ := s.SummaryTotal("wamp_in_timeouts_seconds")
		return float64(r), float64(e), float64(to)
	}
	testkit.Eventually(t, 60*time.Second, "1200 calls", func() (any, bool) {
		r, e, to := ended(in.Scrape(t))
		return r + e + to, r+e+to >= 1200
	})
	for _, w := range writers {
		t.Log(w.Stop("writer --udp:"))
	}
	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "no calls pending", func() (any, bool) {
		got = in.Scrape(t)
		pending, ok := got.Gauge("wamp_observer_log_calls_pending")
		return pending, ok && pending == 0
	})
	responses, errs, timeouts := ended(got)
	n := responses + errs + timeouts
	// The seed: 1 in 9 delayed past the deadline, independently 1 in 9
	// never answered, 1 in 99 of the answered ones an error.
	want := map[string]float64{
		"timeouts":  1.0/9 + 8.0/9*1.0/9,
		"errors":    8.0 / 9 * 8.0 / 9 * 1.0 / 99,
		"responses": 8.0 / 9 * 8.0 / 9 * 98.0 / 99,
	}
	for name, count := range map[string]float64{"responses": responses, "errors": errs, "timeouts": timeouts} {
		p := want[name]
		sd := math.Sqrt(p * (1 - p) / n)
		// Five standard deviations: a false alarm about once in 1.7 million runs.
		if got := count / n; math.Abs(got-p) > 5*sd {
			t.Errorf("%s: %.4f of %v calls, want %.4f ± %.4f", name, got, n, p, 5*sd)
		}
	}
	for _, h := range hellos {
		if n, _, _ := got.Summary("wamp_in_responses_seconds", "message", h); n == 0 {
			t.Errorf("%s: no responses", h)
		}
	}
	// The responses' latency is the seed's 5–10 ms.
	if h, ok := got.Histogram("wamp_in_responses_total_seconds"); ok {
		if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean < 0.004 || mean > 0.05 {
			t.Errorf("mean response latency %.4fs, want about 0.0075s", mean)
		}
	}
	t.Logf("%v calls: %v responses, %v errors, %v timeouts", n, responses, errs, timeouts)
}

// A real PHP process batches a CALL and its RESULT, logged about 60 ms
// apart, into one datagram: the router records the call as the PHP process
// timed it, between the bounds the process measured around its two log()
// calls, not as the 0 ms between the lines' arrivals.
func TestBatchedLinesAreTimedByThePHPProcess(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})
	code := `require 'php/WampObserver.php';
WampObserver::log('wamp', 'out', '[1,"realm1",{}]'); // sent at once
$a = hrtime(true);
WampObserver::log('wamp', 'out', '[48,1,{},"batched"]'); // waits in the batch
$b = hrtime(true);
while (hrtime(true) - $b < 60000000) {
}
$c = hrtime(true);
WampObserver::log('wamp', 'out', '[50,1,{}]'); // the CALL waited 10 ms: both leave now
$d = hrtime(true);
echo "bounds ", $c - $b, " ", $d - $a, "\n";`
	p := harness.StartProcess(t, []string{"WAMP_OBSERVER_ADDR=" + in.LogAddr}, harness.RequireTool(t, "php"), "-r", code)
	var low, high float64
	if _, err := fmt.Sscanf(p.WaitLine("bounds ", 10*time.Second), "bounds %f %f", &low, &high); err != nil {
		t.Fatal(err)
	}
	p.ExitsCleanly()
	var sum float64
	testkit.Eventually(t, 10*time.Second, "the call recorded", func() (any, bool) {
		var n uint64
		var ok bool
		n, sum, ok = in.Scrape(t).Summary("wamp_out_responses_seconds", "message", "batched")
		return sum, ok && n == 1
	})
	if ns := sum * 1e9; ns < low || ns > high {
		t.Errorf("recorded %.3f ms, the PHP process took between %.3f and %.3f ms", sum*1e3, low/1e6, high/1e6)
	}
}
