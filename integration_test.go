package observer_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var outcomes = []string{"responses", "errors", "timeouts"}

// TestRouterTimesEveryOutcomePerProcedure drives each outcome on purpose
// through a real router with nexus's own client, then checks the scrape.
func TestRouterTimesEveryOutcomePerProcedure(t *testing.T) {
	const deadline = 250 * time.Millisecond
	eachDeployment(t, harness.Config{Timeout: deadline}, func(t *testing.T, in *harness.Instance) {

		release := make(chan struct{}) // lets the abandoned hello6 call finish
		callee := in.Connect(t, serialize.JSON)
		handlers := map[string]client.InvocationHandler{
			"hello1": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Args: wamp.List{"hi"}}
			},
			"hello2": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Err: "app.error.failed"}
			},
			"hello3": func(context.Context, *wamp.Invocation) client.InvokeResult {
				time.Sleep(deadline + 150*time.Millisecond) // answers past the deadline
				return client.InvokeResult{Args: wamp.List{"late"}}
			},
			"hello4": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
				<-ctx.Done() // the dealer's INTERRUPT, on the CALL timeout option
				return client.InvocationCanceled
			},
			"hello5": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
				for i := range 3 {
					if err := callee.SendProgress(ctx, wamp.List{i}, nil); err != nil {
						return client.InvokeResult{Err: "app.error.progress"}
					}
				}
				return client.InvokeResult{Args: wamp.List{"done"}}
			},
			"hello6": func(context.Context, *wamp.Invocation) client.InvokeResult {
				<-release
				return client.InvokeResult{}
			},
			"hello7": nil, // registered, never called
			"hello8": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Args: wamp.List{"hi"}}
			},
			"hello9": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Args: wamp.List{"hi"}}
			},
		}
		for proc, h := range handlers {
			if h == nil {
				h = func(context.Context, *wamp.Invocation) client.InvokeResult { return client.InvokeResult{} }
			}
			if err := callee.Register(proc, h, nil); err != nil {
				t.Fatalf("register %s: %v", proc, err)
			}
		}

		ctx := context.Background()
		caller := in.Connect(t, serialize.JSON)
		call := func(c *client.Client, proc string, opts wamp.Dict, progress client.ProgressHandler) error {
			_, err := c.Call(ctx, proc, opts, nil, nil, progress)
			return err
		}
		times := func(n int, proc string, opts wamp.Dict, wantErr string) {
			t.Helper()
			for range n {
				err := call(caller, proc, opts, nil)
				if got := harness.ErrorURI(err); got != wantErr {
					t.Fatalf("call %s: error %q, want %q (%v)", proc, got, wantErr, err)
				}
			}
		}
		times(20, "hello1", nil, "")
		times(7, "hello2", nil, "app.error.failed")
		times(3, "hello3", nil, "")                                         // the caller waits; the router has timed out
		times(2, "hello4", wamp.Dict{"timeout": 100}, "wamp.error.timeout") // the dealer times out
		times(4, "nobody.registered", nil, "wamp.error.no_such_procedure")

		progressSeen := 0
		for range 2 {
			if err := call(caller, "hello5", wamp.Dict{"receive_progress": true}, func(*wamp.Result) { progressSeen++ }); err != nil {
				t.Fatalf("progressive call: %v", err)
			}
		}
		if progressSeen != 6 {
			t.Fatalf("saw %d progressive results, want 6", progressSeen)
		}

		// Other serializers, and concurrent callers.
		var wg sync.WaitGroup
		for _, s := range []serialize.Serialization{serialize.MSGPACK, serialize.CBOR, serialize.JSON, serialize.JSON} {
			c := in.Connect(t, s)
			wg.Go(func() {
				for range 25 {
					if err := call(c, "hello8", nil, nil); err != nil {
						t.Errorf("hello8: %v", err)
					}
				}
			})
		}
		wg.Wait()

		// A caller that leaves mid-call: its call is counted in no outcome.
		leaver := in.Connect(t, serialize.JSON)
		leaverDone := make(chan struct{})
		go func() {
			defer close(leaverDone)
			_ = call(leaver, "hello6", wamp.Dict{"timeout": 10_000}, nil)
		}()
		testkit.Eventually(t, 10*time.Second, "the hello6 call in flight", func() (any, bool) {
			n, ok := in.Scrape(t).Gauge("wamp_router_calls_in_flight")
			return n, ok && n == 1
		})
		leaver.Close()
		<-leaverDone
		close(release)

		var got *harness.Scrape
		testkit.Eventually(t, 10*time.Second, "no calls in flight and 6 sessions", func() (any, bool) {
			got = in.Scrape(t)
			inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
			sessions, ok2 := got.Gauge("wamp_router_sessions")
			return fmt.Sprintf("%v calls in flight, %v sessions", inFlight, sessions), ok1 && ok2 && inFlight == 0 && sessions == 6
		})

		want := map[string][3]uint64{ // responses, errors, timeouts
			"hello1":            {20, 0, 0},
			"hello2":            {0, 7, 0},
			"hello3":            {0, 0, 3},
			"hello4":            {0, 0, 2},
			"hello5":            {2, 0, 0},
			"hello6":            {0, 0, 0},
			"hello7":            {0, 0, 0},
			"hello8":            {100, 0, 0},
			"hello9":            {0, 0, 0},
			"nobody.registered": {0, 4, 0},
		}
		for msg, counts := range want {
			for i, outcome := range outcomes {
				count, _, ok := got.Summary("wamp_router_"+outcome+"_seconds", "message", msg)
				if !ok {
					t.Errorf("%s %s: no series", msg, outcome)
					continue
				}
				if count != counts[i] {
					t.Errorf("%s %s: count %d, want %d", msg, outcome, count, counts[i])
				}
			}
		}
		// Timeouts past the router's deadline are recorded as the deadline.
		if _, sum, _ := got.Summary("wamp_router_timeouts_seconds", "message", "hello3"); math.Abs(sum-3*deadline.Seconds()) > 1e-6 {
			t.Errorf("hello3 timeouts sum %gs, want %gs", sum, 3*deadline.Seconds())
		}
		// The dealer's timeouts come after the 100ms option, before our deadline.
		if _, sum, _ := got.Summary("wamp_router_timeouts_seconds", "message", "hello4"); sum < 0.2 || sum >= 2*deadline.Seconds() {
			t.Errorf("hello4 timeouts sum %gs, want two calls of 100ms..%v", sum, deadline)
		}
		// The histograms hold the same calls as the summaries.
		for _, outcome := range outcomes {
			var count uint64
			var sum float64
			summaries, _ := got.Family("wamp_router_" + outcome + "_seconds")
			for _, m := range summaries.GetMetric() {
				count += m.GetSummary().GetSampleCount()
				sum += m.GetSummary().GetSampleSum()
			}
			h, ok := got.Histogram("wamp_router_" + outcome + "_total_seconds")
			if !ok {
				t.Fatalf("no histogram for %s", outcome)
			}
			if h.GetSampleCount() != count || math.Abs(h.GetSampleSum()-sum) > 1e-9 {
				t.Errorf("%s: histogram count %d sum %g, summaries count %d sum %g",
					outcome, h.GetSampleCount(), h.GetSampleSum(), count, sum)
			}
			var bounds []float64
			for _, b := range h.GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) {
					bounds = append(bounds, b.GetUpperBound())
				}
			}
			if !slices.Equal(bounds, metrics.DefaultBuckets()) {
				t.Errorf("%s: buckets %v, want the original %v", outcome, bounds, metrics.DefaultBuckets())
			}
		}
	})
}

func TestMetricsEndpoints(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: time.Second})
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a hello1 series", func() (any, bool) {
		_, _, ok := in.ScrapePath(t, "/").Summary("wamp_router_responses_seconds", "message", "hello1")
		return ok, ok
	})
	root, metrics := in.ScrapePath(t, "/"), in.ScrapePath(t, "/metrics")
	for _, name := range []string{"wamp_router_responses_seconds", "wamp_router_sessions", "go_goroutines", "process_resident_memory_bytes"} {
		_, inRoot := root.Family(name)
		_, inMetrics := metrics.Family(name)
		if !inRoot || !inMetrics {
			t.Errorf("%s missing from / or /metrics", name)
		}
	}

	for _, tc := range []struct {
		accept, encoding string
		wantType         expfmt.FormatType
	}{
		{"application/openmetrics-text; version=1.0.0", "gzip", expfmt.TypeOpenMetrics},
		{"text/plain; version=0.0.4", "gzip", expfmt.TypeTextPlain},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "", expfmt.TypeProtoDelim},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, in.MetricsURL+"/metrics", nil)
			req.Header.Set("Accept", tc.accept)
			if tc.encoding != "" {
				req.Header.Set("Accept-Encoding", tc.encoding)
			}
			// A bare transport, so that gzip is not undone behind our back.
			rsp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer rsp.Body.Close()
			body := io.Reader(rsp.Body)
			if gz := rsp.Header.Get("Content-Encoding") == "gzip"; gz != (tc.encoding == "gzip") {
				t.Fatalf("Accept-Encoding %q answered with Content-Encoding %q", tc.encoding, rsp.Header.Get("Content-Encoding"))
			} else if gz {
				if body, err = gzip.NewReader(rsp.Body); err != nil {
					t.Fatal(err)
				}
			}
			if tc.wantType == expfmt.TypeOpenMetrics {
				// common/expfmt has no OpenMetrics parser; what we check is
				// the negotiation.
				if mt, _, _ := mime.ParseMediaType(rsp.Header.Get("Content-Type")); mt != "application/openmetrics-text" {
					t.Fatalf("Accept %q answered with %q", tc.accept, rsp.Header.Get("Content-Type"))
				}
				return
			}
			format := expfmt.ResponseFormat(rsp.Header)
			if format.FormatType() != tc.wantType {
				t.Fatalf("Accept %q answered with %q", tc.accept, rsp.Header.Get("Content-Type"))
			}
			dec := expfmt.NewDecoder(body, format)
			found := false
			for {
				var mf dto.MetricFamily
				if err := dec.Decode(&mf); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("decode %s: %v", format, err)
				}
				found = found || mf.GetName() == "wamp_router_responses_seconds"
			}
			if !found {
				t.Errorf("%s: wamp_router_responses_seconds not found", format)
			}
		})
	}
}

// TestOneCalleeServesAHundredBusyCallers is the load nexus's default
// outbound queue of 64 refuses ("callee blocked"): 100 callers with a call
// each always in flight to one callee that answers after a few
// milliseconds.
func TestOneCalleeServesAHundredBusyCallers(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: 5 * time.Second})
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		time.Sleep(5 * time.Millisecond)
		return client.InvokeResult{Args: wamp.List{"hi"}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	const callers, calls = 100, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := map[string]int{}
	for range callers {
		c := in.Connect(t, serialize.JSON)
		wg.Go(func() {
			for range calls {
				if _, err := c.Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
					mu.Lock()
					failures[harness.ErrorURI(err)]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("calls failed: %v", failures)
	}
	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "no calls in flight", func() (any, bool) {
		got = in.Scrape(t)
		n, ok := got.Gauge("wamp_router_calls_in_flight")
		return n, ok && n == 0
	})
	if count, _, _ := got.Summary("wamp_router_responses_seconds", "message", "hello1"); count != callers*calls {
		t.Errorf("responses %d, want %d", count, callers*calls)
	}
}

// TestDealerTimeoutOutcomeIsWhatTheCallerReceived: for a CALL with a
// timeout option, nexus enforces the deadline, starting its timer a little
// after the observer reads the CALL. A callee answering at the edge of it
// gets some calls a RESULT and others wamp.error.timeout; the router must
// count exactly what the caller received, call for call.
func TestDealerTimeoutOutcomeIsWhatTheCallerReceived(t *testing.T) {
	const (
		timeoutMs = 100
		batch     = 60 // calls at once
		calls     = 5 * batch
	)
	in := harness.Start(t, harness.Config{Timeout: time.Second})
	callee := in.Connect(t, serialize.JSON)
	// Call i sleeps from 5 ms before the deadline to 1 ms after it, in
	// steps of 100 µs: many answers land in the dealer's last milliseconds.
	err := callee.Register("edge", func(ctx context.Context, inv *wamp.Invocation) client.InvokeResult {
		i, _ := wamp.AsInt64(inv.Arguments[0])
		i %= batch
		select {
		case <-time.After(timeoutMs*time.Millisecond - 5*time.Millisecond + time.Duration(i)*100*time.Microsecond):
			return client.InvokeResult{Args: wamp.List{i}}
		case <-ctx.Done(): // the dealer's INTERRUPT
			return client.InvocationCanceled
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	caller := in.Connect(t, serialize.JSON)
	var (
		mu       sync.Mutex
		received = map[string]int{}
		wg       sync.WaitGroup
	)
	for i := range calls {
		if i%batch == 0 {
			wg.Wait() // one batch after the other, so timers stay sharp
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := caller.Call(ctx, "edge", wamp.Dict{"timeout": timeoutMs}, wamp.List{i}, nil, nil)
			outcome := "responses"
			switch uri := harness.ErrorURI(err); uri {
			case "":
			case "wamp.error.timeout":
				outcome = "timeouts"
			default:
				outcome = "unexpected " + uri
			}
			mu.Lock()
			received[outcome]++
			mu.Unlock()
		})
	}
	wg.Wait()
	// Both outcomes, or the edge was not reached and nothing is tested.
	if received["responses"]+received["timeouts"] != calls || received["responses"] == 0 || received["timeouts"] == 0 {
		t.Fatalf("the caller received %v", received)
	}
	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "every call recorded", func() (any, bool) {
		got = in.Scrape(t)
		n := 0
		for _, o := range outcomes {
			c, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", "edge") // none yet: 0
			n += int(c)
		}
		return n, n == calls
	})
	for _, o := range outcomes {
		count, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", "edge")
		if int(count) != received[o] {
			t.Errorf("%s: router counted %d, the caller received %d (caller: %v)", o, count, received[o], received)
		}
	}
}

// TestScrapeStormDoesNotDistortTimings: many scrapers of a full family at
// once must not starve the router of the CPU its own goroutines need, or
// the calls it times look slower than they are — to the point of being
// counted as timeouts although the caller got its answer in time.
func TestScrapeStormDoesNotDistortTimings(t *testing.T) {
	const (
		procedures = 1000
		scrapers   = 100
		calls      = 32
	)
	// A call that takes the callee no time is counted a timeout only if
	// the router takes a second over it. Without the scrape gate, 31 of
	// the 32 calls did; with it, a 250 ms deadline was still missed about
	// once a run on a loaded 2-core machine with the race detector.
	in := harness.Start(t, harness.Config{Timeout: time.Second})
	callee := in.Connect(t, serialize.JSON)
	for i := range procedures {
		if err := callee.Register(fmt.Sprintf("com.example.procedure%d", i), func(context.Context, *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{}
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.MetricsURL+"/metrics", nil)
				if rsp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, rsp.Body)
					rsp.Body.Close()
				}
			}
		})
	}
	caller := in.Connect(t, serialize.JSON)
	answered := 0
	for range calls {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := caller.Call(cctx, "com.example.procedure0", nil, nil, nil, nil); err == nil {
			answered++
		}
		cancel()
	}
	stop()
	wg.Wait()
	// The server may still be finishing the scrapes the storm abandoned,
	// and answers 503 to more than its bound of them.
	testkit.Eventually(t, 10*time.Second, "the scrape storm's end", func() (any, bool) {
		rsp, err := http.Get(in.MetricsURL + "/metrics")
		if err != nil {
			return err, false
		}
		rsp.Body.Close()
		return rsp.Status, rsp.StatusCode == http.StatusOK
	})
	got := in.Scrape(t)
	responses, _, _ := got.Summary("wamp_router_responses_seconds", "message", "com.example.procedure0")
	timeouts, _, _ := got.Summary("wamp_router_timeouts_seconds", "message", "com.example.procedure0")
	if answered != calls || int(responses) != answered || timeouts != 0 {
		t.Errorf("the caller got %d of %d answers; the router counted %d responses and %d timeouts", answered, calls, responses, timeouts)
	}
}
