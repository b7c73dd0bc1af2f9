package observer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// The operator files shipped in deploy/prometheus.
const (
	shippedConfig    = "deploy/prometheus/prometheus.yml"
	shippedRules     = "deploy/prometheus/rules.yml"
	shippedRulesTest = "deploy/prometheus/rules_test.yml"
)

func TestShippedPrometheusFilesPassPromtool(t *testing.T) {
	promtool := harness.RequireTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", shippedConfig},
		{"check", "rules", shippedRules},
		{"test", "rules", shippedRulesTest},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestScrapePassesPromtoolCheckMetrics lints a scrape holding every kind of
// family the program makes: the router's, a log family, self-metrics.
func TestScrapePassesPromtoolCheckMetrics(t *testing.T) {
	promtool := harness.RequireTool(t, "promtool")
	in := harness.Start(t, harness.Config{Timeout: time.Second, Log: true})
	in.CallThroughEachPath(t)
	_, body := in.Get(t, "/metrics", "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Log senders choose protocol/direction, which become metric names. One
// datagram ["php","ms",…] used to make promtool check metrics fail
// (php_ms_responses_seconds: an abbreviated unit). Pairs whose names the
// linter rejects are refused as lint_name, once each however many lines
// they send; the pairs the README names, and others, are served, and the
// scrape passes promtool with all of them sent.
func TestLogFamilyNamesKeepTheScrapeLintClean(t *testing.T) {
	promtool := harness.RequireTool(t, "promtool")
	in := harness.Start(t, harness.Config{Timeout: time.Second, Log: true})
	conn := harness.Dial(t, "udp", in.LogAddr)
	refused := [][2]string{
		{"php", "ms"}, {"php", "sec"}, {"php", "us"}, {"php", "ns"}, {"php", "kb"},
		{"php", "milliseconds"}, {"php", "counter"}, {"php", "d"},
	}
	// The README's pairs, and two the linter accepts as it reads the first
	// name part as a namespace, not a unit or type.
	valid := [][2]string{{"wamp", "in"}, {"wamp", "out"}, {"wamp", "v1"}, {"php", "out"}, {"s", "out"}, {"gauge", "out"}}
	line := func(pair [2]string, msg string) string {
		return testkit.LogLine(pair[0], pair[1], msg) + "\n"
	}
	for round := range 3 {
		for _, p := range refused {
			if _, err := conn.Write([]byte(line(p, `[48,1,{},"x"]`))); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range valid {
			id := round + 1
			if _, err := conn.Write([]byte(line(p, fmt.Sprintf(`[48,%d,{},"x"]`, id)) + line(p, fmt.Sprintf(`[50,%d,{},[]]`, id)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := float64(3 * len(refused))
	testkit.Eventually(t, 10*time.Second, "the refused lines counted", func() (any, bool) {
		n, ok := in.Scrape(t).Counter("wamp_observer_log_bad_lines_total", "reason", "lint_name")
		return n, ok && n == want
	})
	s := in.Scrape(t)
	if got, _ := s.CounterTotal("wamp_observer_log_bad_lines_total"); got != want {
		t.Errorf("%v bad lines, want %v, all lint_name", got, want)
	}
	for _, p := range valid {
		if got, _, _ := s.Summary(p[0]+"_"+p[1]+"_responses_seconds", "message", "x"); got != 3 {
			t.Errorf("%s/%s: %d responses, want 3", p[0], p[1], got)
		}
	}
	_, body := in.Get(t, "/metrics", "")
	for _, p := range refused {
		if bytes.Contains(body, []byte("\n"+p[0]+"_"+p[1]+"_")) {
			t.Errorf("the scrape has %s_%s_ families", p[0], p[1])
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Every format the router offers passes a strict parser of that format:
// OpenMetrics the Python client's strict parser (client_golang's Go
// collector alone would fail it, issue #829), the protobuf format
// expfmt's decoder, the text format expfmt's parser.
func TestEveryScrapeFormatPassesAStrictParser(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: time.Second, Log: true})
	in.CallThroughEachPath(t)

	t.Run("openmetrics", func(t *testing.T) {
		python := harness.RequireTool(t, "/usr/bin/python3")
		ct, body := in.Get(t, "/metrics", "application/openmetrics-text;version=1.0.0")
		if !strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Fatalf("Content-Type %q", ct)
		}
		cmd := exec.Command(python, "testdata/openmetrics/check.py")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("strict OpenMetrics parser: %v\n%s", err, out)
		}
	})
	t.Run("protobuf", func(t *testing.T) {
		ct, body := in.Get(t, "/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
		dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.Format(ct))
		seen := map[string]bool{}
		for {
			var mf dto.MetricFamily
			err := dec.Decode(&mf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("decode %s: %v", ct, err)
			}
			if seen[mf.GetName()] {
				t.Errorf("family %s twice", mf.GetName())
			}
			seen[mf.GetName()] = true
		}
		if !seen["wamp_router_responses_seconds"] {
			t.Errorf("no wamp_router_responses_seconds in %d families", len(seen))
		}
	})
	t.Run("text", func(t *testing.T) {
		_, body := in.Get(t, "/metrics", "text/plain;version=0.0.4")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatalf("parse: %v", err)
		}
	})
}

// TestPrometheusAggregatesTwoRouters drives known calls through two
// routers scraped as two targets of one job, and reads them back through
// PromQL: sums across instances, a latency quantile, and the shipped
// recording rules. So it does for two proxies in front of one stock nexus,
// with the callee behind the first.
func TestPrometheusAggregatesTwoRouters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Prometheus")
	}
	t.Run("two routers", func(t *testing.T) {
		aggregatesTwoRouters(t, []*harness.Instance{
			harness.Start(t, harness.Config{Timeout: time.Second}),
			harness.Start(t, harness.Config{Timeout: time.Second}),
		}, false)
	})
	t.Run("two proxies in front of one stock nexus", func(t *testing.T) {
		upstream := harness.StartStockNexus(t).URL
		aggregatesTwoRouters(t, []*harness.Instance{
			harness.Start(t, harness.Config{Timeout: time.Second, Upstream: upstream}),
			harness.Start(t, harness.Config{Timeout: time.Second, Upstream: upstream}),
		}, true)
	})
}

// aggregatesTwoRouters is TestPrometheusAggregatesTwoRouters on routers,
// whose one callee serves both when they share an upstream.
func aggregatesTwoRouters(t *testing.T, routers []*harness.Instance, sharedUpstream bool) {
	const latency = 60 * time.Millisecond // inside the (0.05, 0.1] bucket, with room
	var targets []string
	for i, r := range routers {
		targets = append(targets, strings.TrimPrefix(r.MetricsURL, "http://"))
		if sharedUpstream && i > 0 {
			continue
		}
		callee := r.Connect(t, serialize.JSON)
		for proc, h := range map[string]client.InvocationHandler{
			"hello1": func(context.Context, *wamp.Invocation) client.InvokeResult {
				time.Sleep(latency)
				return client.InvokeResult{Args: wamp.List{"hi"}}
			},
			"hello2": func(context.Context, *wamp.Invocation) client.InvokeResult {
				return client.InvokeResult{Err: "app.error.failed"}
			},
			"hello3": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
				<-ctx.Done() // until the dealer's timeout interrupts it
				return client.InvocationCanceled
			},
		} {
			if err := callee.Register(proc, h, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	prom := harness.StartPrometheus(t, shippedRules, targets...)
	prom.WaitForQuery(t, `sum(up{job="wamp-router"})`, "", map[string]float64{"": 2})

	// Calls spread over a few scrapes, different on each router.
	plan := []struct{ hello1, hello2, hello3 int }{{40, 5, 3}, {30, 2, 1}}
	var wg sync.WaitGroup
	for i, r := range routers {
		caller := r.Connect(t, serialize.JSON)
		n := plan[i]
		wg.Go(func() {
			call := func(proc string, times int, opts wamp.Dict) {
				for range times {
					_, _ = caller.Call(context.Background(), proc, opts, nil, nil, nil)
				}
			}
			call("hello2", n.hello2, nil)
			call("hello3", n.hello3, wamp.Dict{"timeout": 50})
			call("hello1", n.hello1, nil)
		})
	}
	wg.Wait()

	for _, tc := range []struct {
		outcome string
		want    map[string]float64
	}{
		{"responses", map[string]float64{"hello1": 70, "hello2": 0, "hello3": 0}},
		{"errors", map[string]float64{"hello1": 0, "hello2": 7, "hello3": 0}},
		{"timeouts", map[string]float64{"hello1": 0, "hello2": 0, "hello3": 4}},
	} {
		prom.WaitForQuery(t, "sum by (message) (wamp_router_"+tc.outcome+"_seconds_count)", "message", tc.want)
	}
	// Per instance, each router holds only its own calls.
	prom.WaitForQuery(t, `sum by (instance) (wamp_router_responses_seconds_count)`, "instance",
		map[string]float64{targets[0]: 40, targets[1]: 30})

	// Every hello1 call sleeps 60 ms: the median lies in that bucket, and
	// no quantile below it (a loaded machine may push a few calls past
	// 100 ms, so the p99 has no upper bound here).
	p50 := prom.Query(t, `histogram_quantile(0.5, sum by (le) (rate(wamp_router_responses_total_seconds_bucket[1m])))`, "")[""]
	if !(p50 > 0.05 && p50 <= 0.1) {
		t.Errorf("p50 %gs, want it in the (0.05, 0.1] bucket of %v calls", p50, latency)
	}

	// The shipped recording rules, evaluated by Prometheus every second.
	prom.WaitForQuery(t, `message:wamp_router_errors:ratio_rate5m{message="hello2"}`, "message", map[string]float64{"hello2": 1})
	prom.WaitForQuery(t, `message:wamp_router_timeouts:ratio_rate5m{message="hello3"}`, "message", map[string]float64{"hello3": 1})
	if got := prom.Query(t, `job:wamp_router_responses_seconds:p99_rate5m`, "job")["wamp-router"]; !(got > 0.05) {
		t.Errorf("recorded p99 %gs, want it above the 0.05 s bucket of %v calls", got, latency)
	}
}

// The per-procedure latency histograms are native histograms a real
// Prometheus ingests: histogram_quantile over them gives each procedure's
// p99 within the documented error (one bucket, 9.05%) of the exact p99 of
// the calls made, from a callee that sleeps known times. Each procedure's
// 4 slowest calls of 200 hold its p99, chosen well inside a bucket so
// that what the router and the network add cannot carry them out of it.
func TestPrometheusGivesEachProcedureItsP99(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Prometheus")
	}
	const calls, slow = 200, 4
	plan := map[string]struct{ fast, slow time.Duration }{
		"hello.fast": {2 * time.Millisecond, 77 * time.Millisecond},
		"hello.slow": {10 * time.Millisecond, 300 * time.Millisecond},
	}
	r := harness.Start(t, harness.Config{Timeout: 5 * time.Second})
	callee := r.Connect(t, serialize.JSON)
	for proc := range plan {
		if err := callee.Register(proc, func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			d, _ := wamp.AsInt64(inv.Arguments[0])
			time.Sleep(time.Duration(d))
			return client.InvokeResult{}
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	prom := harness.StartPrometheusWith(t, []string{"native-histograms"}, shippedRules, strings.TrimPrefix(r.MetricsURL, "http://"))
	prom.WaitForQuery(t, `up{job="wamp-router"}`, "", map[string]float64{"": 1})

	exact := map[string]time.Duration{} // the p99 of what each caller saw
	var mu sync.Mutex
	var wg sync.WaitGroup
	for proc, p := range plan {
		caller := r.Connect(t, serialize.JSON)
		wg.Go(func() {
			var took []time.Duration
			for i := range calls {
				sleep := p.fast
				if i%(calls/slow) == 0 {
					sleep = p.slow
				}
				start := time.Now()
				if _, err := caller.Call(context.Background(), proc, nil, wamp.List{int64(sleep)}, nil, nil); err != nil {
					t.Errorf("%s: %v", proc, err)
					return
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			mu.Lock()
			exact[proc] = took[int(0.99*calls)-1]
			mu.Unlock()
		})
	}
	wg.Wait()

	prom.WaitForQuery(t, `histogram_count(sum by (message) (wamp_router_responses_latency_seconds))`, "message",
		map[string]float64{"hello.fast": calls, "hello.slow": calls})
	p99 := prom.Query(t, `histogram_quantile(0.99, sum by (message) (rate(wamp_router_responses_latency_seconds[1m])))`, "message")
	const bound = 0.0905 // 2^(1/8) - 1
	for proc, p := range plan {
		got := time.Duration(p99[proc] * float64(time.Second))
		// The router's p99 lies between the sleep and what the caller
		// saw; the estimate is within one bucket of it.
		if lo, hi := float64(p.slow)*(1-bound), float64(exact[proc])*(1+bound); !(float64(got) >= lo && float64(got) <= hi) {
			t.Errorf("%s: p99 %v from Prometheus; the calls slept %v and took %v at p99: want it within %.2f%% of that",
				proc, got, p.slow, exact[proc], bound*100)
		}
	}
	// The histogram counts what the seed-shaped summary counts.
	prom.WaitForQuery(t, `sum by (message) (wamp_router_responses_seconds_count)`, "message",
		map[string]float64{"hello.fast": calls, "hello.slow": calls})
}
