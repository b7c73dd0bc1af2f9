package observer_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
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
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// instance is a router started in-process on free loopback ports.
type instance struct {
	wampURL    string
	metricsURL string
}

func startInstance(t *testing.T, cfg app.Config) *instance {
	t.Helper()
	return startInstanceOn(t, cfg, nil)
}

// startInstanceOn is startInstance with a log listener on socks, if any.
func startInstanceOn(t *testing.T, cfg app.Config, socks *wamplog.Sockets) *instance {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ls := app.Listeners{WAMP: listen(), Metrics: listen(), Log: socks}
	inst := &instance{
		wampURL:    "ws://" + ls.WAMP.Addr().String() + "/",
		metricsURL: "http://" + ls.Metrics.Addr().String(),
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, ls) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	})
	return inst
}

// connect joins the realm with nexus's own Go client.
func (in *instance) connect(t *testing.T, s serialize.Serialization) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.ConnectNet(ctx, in.wampURL, client.Config{
		Realm:         "realm1",
		Serialization: s,
		Logger:        discardStdLog{},
	})
	if err != nil {
		t.Fatalf("connect %s: %v", in.wampURL, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type discardStdLog struct{}

func (discardStdLog) Print(...any)          {}
func (discardStdLog) Println(...any)        {}
func (discardStdLog) Printf(string, ...any) {}

// scrape fetches path from the metrics server and parses it with expfmt.
func (in *instance) scrape(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	rsp, err := http.Get(in.metricsURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, rsp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rsp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return mfs
}

// scrapeResult reads the figures the tests assert on.
type scrapeResult map[string]*dto.MetricFamily

// summary returns count and sum of <family>{message=...}, and whether the
// series exists.
func (s scrapeResult) summary(family, message string) (uint64, float64, bool) {
	for _, m := range s[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "message" && l.GetValue() == message {
				return m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum(), true
			}
		}
	}
	return 0, 0, false
}

func (s scrapeResult) gauge(name string) float64 {
	mf, ok := s[name]
	if !ok || len(mf.GetMetric()) != 1 {
		return math.NaN()
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

func (s scrapeResult) histogram(name string) *dto.Histogram {
	mf, ok := s[name]
	if !ok || len(mf.GetMetric()) != 1 {
		return nil
	}
	return mf.GetMetric()[0].GetHistogram()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var outcomes = []string{"responses", "errors", "timeouts"}

// TestRouterTimesEveryOutcomePerProcedure drives each outcome on purpose
// through a real router with nexus's own client, then checks the scrape.
func TestRouterTimesEveryOutcomePerProcedure(t *testing.T) {
	const deadline = 250 * time.Millisecond
	in := startInstance(t, app.Config{CallTimeout: deadline})

	release := make(chan struct{}) // lets the abandoned hello6 call finish
	callee := in.connect(t, serialize.JSON)
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
	caller := in.connect(t, serialize.JSON)
	call := func(c *client.Client, proc string, opts wamp.Dict, progress client.ProgressHandler) error {
		_, err := c.Call(ctx, proc, opts, nil, nil, progress)
		return err
	}
	times := func(n int, proc string, opts wamp.Dict, wantErr string) {
		t.Helper()
		for range n {
			err := call(caller, proc, opts, nil)
			if got := errURI(err); got != wantErr {
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
		c := in.connect(t, s)
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
	leaver := in.connect(t, serialize.JSON)
	leaverDone := make(chan struct{})
	go func() {
		defer close(leaverDone)
		_ = call(leaver, "hello6", wamp.Dict{"timeout": 10_000}, nil)
	}()
	waitFor(t, "the hello6 call in flight", func() bool {
		return scrapeResult(in.scrape(t, "/metrics")).gauge("wamp_router_calls_in_flight") == 1
	})
	leaver.Close()
	<-leaverDone
	close(release)

	var got scrapeResult
	waitFor(t, "no calls in flight and 6 sessions", func() bool {
		got = in.scrape(t, "/metrics")
		return got.gauge("wamp_router_calls_in_flight") == 0 && got.gauge("wamp_router_sessions") == 6
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
			count, _, ok := got.summary("wamp_router_"+outcome+"_seconds", msg)
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
	if _, sum, _ := got.summary("wamp_router_timeouts_seconds", "hello3"); math.Abs(sum-3*deadline.Seconds()) > 1e-6 {
		t.Errorf("hello3 timeouts sum %gs, want %gs", sum, 3*deadline.Seconds())
	}
	// The dealer's timeouts come after the 100ms option, before our deadline.
	if _, sum, _ := got.summary("wamp_router_timeouts_seconds", "hello4"); sum < 0.2 || sum >= 2*deadline.Seconds() {
		t.Errorf("hello4 timeouts sum %gs, want two calls of 100ms..%v", sum, deadline)
	}
	// The histograms hold the same calls as the summaries.
	for _, outcome := range outcomes {
		var count uint64
		var sum float64
		for _, m := range got["wamp_router_"+outcome+"_seconds"].GetMetric() {
			count += m.GetSummary().GetSampleCount()
			sum += m.GetSummary().GetSampleSum()
		}
		h := got.histogram("wamp_router_" + outcome + "_total_seconds")
		if h == nil {
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
}

func errURI(err error) string {
	if err == nil {
		return ""
	}
	if rpcErr, ok := err.(client.RPCError); ok {
		return string(rpcErr.Err.Error)
	}
	return err.Error()
}

func TestMetricsEndpoints(t *testing.T) {
	in := startInstance(t, app.Config{CallTimeout: time.Second})
	callee := in.connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hello1 series", func() bool {
		_, _, ok := scrapeResult(in.scrape(t, "/")).summary("wamp_router_responses_seconds", "hello1")
		return ok
	})
	root, metrics := scrapeResult(in.scrape(t, "/")), scrapeResult(in.scrape(t, "/metrics"))
	for _, name := range []string{"wamp_router_responses_seconds", "wamp_router_sessions", "go_goroutines", "process_resident_memory_bytes"} {
		if root[name] == nil || metrics[name] == nil {
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
			req, _ := http.NewRequest(http.MethodGet, in.metricsURL+"/metrics", nil)
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
	in := startInstance(t, app.Config{CallTimeout: 5 * time.Second})
	callee := in.connect(t, serialize.JSON)
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
		c := in.connect(t, serialize.JSON)
		wg.Go(func() {
			for range calls {
				if _, err := c.Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
					mu.Lock()
					failures[errURI(err)]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("calls failed: %v", failures)
	}
	var got scrapeResult
	waitFor(t, "no calls in flight", func() bool {
		got = in.scrape(t, "/metrics")
		return got.gauge("wamp_router_calls_in_flight") == 0
	})
	if count, _, _ := got.summary("wamp_router_responses_seconds", "hello1"); count != callers*calls {
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
	in := startInstance(t, app.Config{CallTimeout: time.Second})
	callee := in.connect(t, serialize.JSON)
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
	caller := in.connect(t, serialize.JSON)
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
			switch uri := errURI(err); uri {
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
	var got scrapeResult
	waitFor(t, "every call recorded", func() bool {
		got = in.scrape(t, "/metrics")
		n := 0
		for _, o := range outcomes {
			c, _, _ := got.summary("wamp_router_"+o+"_seconds", "edge")
			n += int(c)
		}
		return n == calls
	})
	for _, o := range outcomes {
		count, _, _ := got.summary("wamp_router_"+o+"_seconds", "edge")
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
	in := startInstance(t, app.Config{CallTimeout: 250 * time.Millisecond})
	callee := in.connect(t, serialize.JSON)
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
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.metricsURL+"/metrics", nil)
				if rsp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, rsp.Body)
					rsp.Body.Close()
				}
			}
		})
	}
	caller := in.connect(t, serialize.JSON)
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
	waitFor(t, "the scrape storm's end", func() bool {
		rsp, err := http.Get(in.metricsURL + "/metrics")
		if err != nil {
			return false
		}
		rsp.Body.Close()
		return rsp.StatusCode == http.StatusOK
	})
	got := scrapeResult(in.scrape(t, "/metrics"))
	responses, _, _ := got.summary("wamp_router_responses_seconds", "com.example.procedure0")
	timeouts, _, _ := got.summary("wamp_router_timeouts_seconds", "com.example.procedure0")
	if answered != calls || int(responses) != answered || timeouts != 0 {
		t.Errorf("the caller got %d of %d answers; the router counted %d responses and %d timeouts", answered, calls, responses, timeouts)
	}
}
