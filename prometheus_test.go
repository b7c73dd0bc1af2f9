package observer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/php-wamp-observer/php-wamp-observer/app"
)

// The operator files shipped in deploy/prometheus.
const (
	shippedConfig    = "deploy/prometheus/prometheus.yml"
	shippedRules     = "deploy/prometheus/rules.yml"
	shippedRulesTest = "deploy/prometheus/rules_test.yml"
)

func lookTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: ./test.sh installs it from Debian", name)
	}
	return path
}

func TestShippedPrometheusFilesPassPromtool(t *testing.T) {
	promtool := lookTool(t, "promtool")
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
// startInstanceWithTraffic starts a router with a log listener and puts a
// call through each path: one through the router, one logged over UDP.
func startInstanceWithTraffic(t *testing.T) *instance {
	t.Helper()
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: time.Second})
	callee := in.connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := in.connect(t, serialize.JSON).Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", logAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(`["wamp","out","[48,1,{},\"hello1\"]"]` + "\n" + `["wamp","out","[50,1,{}]"]` + "\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the logged call", func() bool {
		return scrapeResult(in.scrape(t, "/metrics")).count("wamp_out_responses_seconds", "hello1") == 1
	})
	return in
}

// get fetches path from the metrics server with the Accept header given.
func (in *instance) get(t *testing.T, path, accept string) (contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.metricsURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, err = io.ReadAll(rsp.Body)
	if err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, rsp.Status, err)
	}
	return rsp.Header.Get("Content-Type"), body
}

func TestScrapePassesPromtoolCheckMetrics(t *testing.T) {
	promtool := lookTool(t, "promtool")
	in := startInstanceWithTraffic(t)
	_, body := in.get(t, "/metrics", "")
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
	promtool := lookTool(t, "promtool")
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: time.Second})
	conn, err := net.Dial("udp", logAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	refused := [][2]string{
		{"php", "ms"}, {"php", "sec"}, {"php", "us"}, {"php", "ns"}, {"php", "kb"},
		{"php", "milliseconds"}, {"php", "counter"}, {"php", "d"},
	}
	// The README's pairs, and two the linter accepts as it reads the first
	// name part as a namespace, not a unit or type.
	valid := [][2]string{{"wamp", "in"}, {"wamp", "out"}, {"wamp", "v1"}, {"php", "out"}, {"s", "out"}, {"gauge", "out"}}
	line := func(pair [2]string, msg string) string {
		return logLine(pair[0], pair[1], msg) + "\n"
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
	waitFor(t, "the refused lines", func() bool {
		return scrapeResult(in.scrape(t, "/metrics")).counter("wamp_observer_log_bad_lines_total", "reason", "lint_name") == want
	})
	s := scrapeResult(in.scrape(t, "/metrics"))
	if got := s.badLines(); got != want {
		t.Errorf("%v bad lines, want %v, all lint_name", got, want)
	}
	for _, p := range valid {
		if got := s.count(p[0]+"_"+p[1]+"_responses_seconds", "x"); got != 3 {
			t.Errorf("%s/%s: %d responses, want 3", p[0], p[1], got)
		}
	}
	_, body := in.get(t, "/metrics", "")
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
	in := startInstanceWithTraffic(t)

	t.Run("openmetrics", func(t *testing.T) {
		python := lookTool(t, "/usr/bin/python3")
		ct, body := in.get(t, "/metrics", "application/openmetrics-text;version=1.0.0")
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
		ct, body := in.get(t, "/metrics", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
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
		_, body := in.get(t, "/metrics", "text/plain;version=0.0.4")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatalf("parse: %v", err)
		}
	})
}

// prometheusServer is a real Prometheus, started by the test on a free
// loopback port, scraping the given targets every second and evaluating
// the shipped rules.
type prometheusServer struct {
	api promv1.API
}

func startPrometheus(t *testing.T, targets ...string) *prometheusServer {
	t.Helper()
	bin := lookTool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: wamp-router
    static_configs:
      - targets: ["%s"]
`, rules, strings.Join(targets, `", "`))
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--config.file="+configFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	url := "http://" + addr
	waitFor(t, "Prometheus to be ready", func() bool {
		rsp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		rsp.Body.Close()
		return rsp.StatusCode == http.StatusOK
	})
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &prometheusServer{api: promv1.NewAPI(c)}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for programs that cannot be handed a listener.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// query runs an instant PromQL query and returns its samples by the value
// of label (or "" for a single unlabelled sample).
func (p *prometheusServer) query(t *testing.T, q, label string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("query %s: got %s, want a vector", q, v.Type())
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric[model.LabelName(label)])] = float64(s.Value)
	}
	return out
}

// waitForQuery polls q until its samples equal want, which is how a test
// learns that Prometheus has scraped the final values.
func (p *prometheusServer) waitForQuery(t *testing.T, q, label string, want map[string]float64) {
	t.Helper()
	var got map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = p.query(t, q, label)
		if mapsEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s:\n got %v\nwant %v", q, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mapsEqual(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPrometheusAggregatesTwoRouters drives known calls through two
// routers scraped as two targets of one job, and reads them back through
// PromQL: sums across instances, a latency quantile, and the shipped
// recording rules.
func TestPrometheusAggregatesTwoRouters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Prometheus")
	}
	const latency = 60 * time.Millisecond // inside the (0.05, 0.1] bucket, with room
	routers := []*instance{
		startInstance(t, app.Config{CallTimeout: time.Second}),
		startInstance(t, app.Config{CallTimeout: time.Second}),
	}
	var targets []string
	for _, r := range routers {
		targets = append(targets, strings.TrimPrefix(r.metricsURL, "http://"))
		callee := r.connect(t, serialize.JSON)
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
	prom := startPrometheus(t, targets...)
	prom.waitForQuery(t, `sum(up{job="wamp-router"})`, "", map[string]float64{"": 2})

	// Calls spread over a few scrapes, different on each router.
	plan := []struct{ hello1, hello2, hello3 int }{{40, 5, 3}, {30, 2, 1}}
	var wg sync.WaitGroup
	for i, r := range routers {
		caller := r.connect(t, serialize.JSON)
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
		prom.waitForQuery(t, "sum by (message) (wamp_router_"+tc.outcome+"_seconds_count)", "message", tc.want)
	}
	// Per instance, each router holds only its own calls.
	prom.waitForQuery(t, `sum by (instance) (wamp_router_responses_seconds_count)`, "instance",
		map[string]float64{targets[0]: 40, targets[1]: 30})

	// Every hello1 call sleeps 60 ms: the median lies in that bucket, and
	// no quantile below it (a loaded machine may push a few calls past
	// 100 ms, so the p99 has no upper bound here).
	p50 := prom.query(t, `histogram_quantile(0.5, sum by (le) (rate(wamp_router_responses_total_seconds_bucket[1m])))`, "")[""]
	if !(p50 > 0.05 && p50 <= 0.1) {
		t.Errorf("p50 %gs, want it in the (0.05, 0.1] bucket of %v calls", p50, latency)
	}

	// The shipped recording rules, evaluated by Prometheus every second.
	prom.waitForQuery(t, `message:wamp_router_errors:ratio_rate5m{message="hello2"}`, "message", map[string]float64{"hello2": 1})
	prom.waitForQuery(t, `message:wamp_router_timeouts:ratio_rate5m{message="hello3"}`, "message", map[string]float64{"hello3": 1})
	if got := prom.query(t, `job:wamp_router_responses_seconds:p99_rate5m`, "job")["wamp-router"]; !(got > 0.05) {
		t.Errorf("recorded p99 %gs, want it above the 0.05 s bucket of %v calls", got, latency)
	}
}
