package observer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/prometheus/common/model"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/grafana"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// The shipped Grafana dashboard, and the picture of it in the docs.
const (
	shippedDashboard = "deploy/grafana/wamp-observer.json"
	dashboardPicture = "docs/grafana-dashboard.png"
	// writeDashboardPictureEnv, set to 1, makes TestDashboardQueriesReturnData
	// run its traffic for pictureHistory and rewrite dashboardPicture; CI
	// leaves it unset, so that tests never rewrite the repository.
	writeDashboardPictureEnv = "WAMP_OBSERVER_WRITE_DASHBOARD_PNG"
)

// scrapeInterval is the scrape interval of harness.StartPrometheusWith's
// configuration. $__rate_interval stands for rateWindow in the queries:
// Grafana makes it at least four scrape intervals, so that a rate() always
// has two samples; twice that keeps a late scrape from emptying a window.
const (
	scrapeInterval = time.Second
	rateWindow     = 8 * scrapeInterval
)

// thisDatasource is the datasource every panel and target must name: the
// dashboard's own variable, so that the importer picks the Prometheus.
var thisDatasource = grafana.DatasourceRef{Type: "prometheus", UID: "${datasource}"}

// The shipped dashboard is a JSON model Grafana imports as it is: a uid and
// a title, no id of its own, unique panel ids, panels that fit the 24
// columns without overlapping, every panel and query on the ${datasource}
// variable, and the variables the queries use, with "All" meaning every
// value (also a missing realm label: a single-realm router has none).
func TestDashboardIsImportable(t *testing.T) {
	d, err := grafana.Load(shippedDashboard)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`).MatchString(d.UID) {
		t.Errorf("uid %q: Grafana wants 1 to 40 of [a-zA-Z0-9_-]", d.UID)
	}
	if d.Title == "" {
		t.Error("no title")
	}
	if d.ID != nil {
		t.Errorf("id %v: an exported dashboard has id null, or an import overwrites another", d.ID)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want one of Grafana 9.x to 11.x (36..41)", d.SchemaVersion)
	}

	ids := map[int]string{}
	var visible []grafana.Panel // those laid out on the page: rows and their open panels
	var walk func(ps []grafana.Panel, inCollapsedRow bool)
	walk = func(ps []grafana.Panel, inCollapsedRow bool) {
		for _, p := range ps {
			if p.ID <= 0 {
				t.Errorf("panel %q: id %d, want a positive one", p.Title, p.ID)
			} else if other, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Title == "" {
				t.Errorf("panel %d has no title", p.ID)
			}
			g := p.GridPos
			if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v does not fit 24 columns", p.Title, g)
			}
			if !inCollapsedRow {
				visible = append(visible, p)
			}
			walk(p.Panels, inCollapsedRow || p.Type == "row" && p.Collapsed)
		}
	}
	walk(d.Panels, false)
	for i, a := range visible {
		for _, b := range visible[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}

	vars := map[string]grafana.Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds := vars["datasource"]; ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("variable datasource: type %q, query %s; want a datasource variable of Prometheus ones", ds.Type, ds.Query)
	}
	for name, definition := range map[string]string{
		"procedure": "label_values(wamp_router_responses_seconds_count, message)",
		"realm":     "label_values(wamp_router_sessions, realm)",
	} {
		v := vars[name]
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Query != definition || v.Definition != definition {
			t.Errorf("variable %s: query %s, definition %q; want %q", name, v.Query, v.Definition, definition)
		}
		if v.Type != "query" || !v.IncludeAll || v.AllValue != ".*" || v.Datasource == nil || *v.Datasource != thisDatasource {
			t.Errorf("variable %s: type %q, includeAll %v, allValue %q, datasource %v; want a query variable on ${datasource} whose All is .*",
				name, v.Type, v.IncludeAll, v.AllValue, v.Datasource)
		}
		if current := fmt.Sprint(v.Current.Value); !strings.Contains(current, "$__all") {
			t.Errorf("variable %s opens on %s, want All", name, current)
		}
	}
	if !vars["procedure"].Multi {
		t.Error("variable procedure: not multi-valued")
	}

	values := d.VariableValues(rateWindow)
	panels := d.GraphPanels()
	if len(panels) < 20 {
		t.Errorf("%d panels with data, want the 20 or more of every row", len(panels))
	}
	for _, p := range panels {
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q, want timeseries or stat", p.Title, p.Type)
		}
		if p.Datasource == nil || *p.Datasource != thisDatasource {
			t.Errorf("panel %q: datasource %v, want %v", p.Title, p.Datasource, thisDatasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refIDs[tg.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, tg.RefID)
			}
			refIDs[tg.RefID] = true
			if tg.Datasource == nil || *tg.Datasource != thisDatasource {
				t.Errorf("panel %q %s: datasource %v, want %v", p.Title, tg.RefID, tg.Datasource, thisDatasource)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q %s: no expr", p.Title, tg.RefID)
			}
			if _, err := grafana.ExpandVariables(tg.Expr, values); err != nil {
				t.Errorf("panel %q %s: %v in %s", p.Title, tg.RefID, err, tg.Expr)
			}
			if strings.Contains(tg.Expr, "rate(") && !strings.Contains(tg.Expr, "$__rate_interval") {
				t.Errorf("panel %q %s: a rate without $__rate_interval: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
}

// Every query of every panel of the shipped dashboard returns data from a
// real Prometheus (native histograms on) scraping the program while real
// clients drive every kind of traffic the dashboard shows: nexus's Go
// client as callers and callees (answers, application errors, calls to a
// procedure nobody registered, calls whose timeout option the callee
// misses so that the dealer interrupts it, a callee leaving mid-call,
// sessions and registrations coming and going, pub/sub), and a PHP
// callee and caller through the log path. A second router serves two
// realms, so that the realm variable meets series with a realm label and
// without. Each query runs as the dashboard opens (every procedure, every
// realm) and fails, naming its panel and expression, when it errs,
// returns no series, only NaN, series without the labels its legend
// shows, or, where the traffic drives it, nothing above zero. With
// WAMP_OBSERVER_WRITE_DASHBOARD_PNG=1 the traffic runs on for a few
// minutes and the panels are drawn from Prometheus's history into
// docs/grafana-dashboard.png.
func TestDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and PHP processes")
	}
	d, err := grafana.Load(shippedDashboard)
	if err != nil {
		t.Fatal(err)
	}
	writePicture := os.Getenv(writeDashboardPictureEnv) == "1"
	var browser string
	if writePicture {
		browser = harness.RequireTool(t, "chromium")
	}
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})

	env := []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + harness.Realm, "WAMP_OBSERVER_ADDR=" + in.LogAddr,
		"WRITER_CALL_TIMEOUT_MS=250"}
	phpCallee := harness.StartPHP(t, env, "php/callee.php")
	phpCallee.WaitLine("callee: registered", 10*time.Second)
	phpCaller := harness.StartPHP(t, env, "php/writer.php")
	stopTraffic := driveDashboardTraffic(t, in)
	defer stopTraffic()
	// A second router, serving two realms: its families have a realm
	// label, the first router's none. The realm variable must list the
	// two, and its All match every series, with the label or without.
	multi := startTwoRealmRouter(t)

	// Every path has counted before Prometheus starts: every series that
	// traffic makes is then in every scrape Prometheus takes.
	testkit.Eventually(t, 30*time.Second, "every kind of call counted", func() (any, bool) {
		s := in.Scrape(t)
		var missing []string
		for _, c := range []struct{ family, procedure string }{
			{"wamp_router_responses_seconds", "dash.ok"},
			{"wamp_router_errors_seconds", "dash.fail"},
			{"wamp_router_timeouts_seconds", "dash.slow"},
			{"wamp_router_errors_seconds", "dash.nobody"},
			{"wamp_router_errors_seconds", "dash.gone"},
			{"wamp_router_responses_seconds", "hello1"},
			{"wamp_out_responses_seconds", "hello1"},
			{"wamp_in_responses_seconds", "hello1"},
		} {
			if n, _, _ := s.Summary(c.family, "message", c.procedure); n == 0 { // no series: none yet
				missing = append(missing, c.family+"{"+c.procedure+"}")
			}
		}
		return missing, len(missing) == 0
	})
	prom := harness.StartPrometheusWith(t, []string{"native-histograms"}, shippedRules,
		strings.TrimPrefix(in.MetricsURL, "http://"), strings.TrimPrefix(multi.MetricsURL, "http://"))
	promStart := time.Now()
	windowFull := func(window time.Duration) func() (any, bool) {
		want := float64(window/scrapeInterval) - 1 // one scrape may fall just outside
		return func() (any, bool) {
			got := prom.Query(t, fmt.Sprintf(`min(count_over_time(up{job="wamp-router"}[%s]))`, model.Duration(window)), "")
			n, ok := got[""]
			return fmt.Sprintf("%v of %v scrapes", n, want), ok && n >= want
		}
	}
	testkit.Eventually(t, 30*time.Second, "a full rate window of scrapes", windowFull(rateWindow))

	values := d.VariableValues(rateWindow)
	t.Run("variables", func(t *testing.T) {
		// label_values(metric, label) lists what group by (label) (metric) has.
		labelValues := regexp.MustCompile(`^label_values\((\w+), (\w+)\)$`)
		for _, v := range d.Templating.List {
			m := labelValues.FindStringSubmatch(v.Definition)
			if v.Type != "query" || m == nil {
				continue
			}
			got := prom.Query(t, fmt.Sprintf("group by (%s) (%s)", m[2], m[1]), m[2])
			wants := map[string][]string{"procedure": {"dash.ok", "hello1"}, "realm": {harness.Realm, secondRealm}}[v.Name]
			for _, want := range wants {
				if _, ok := got[want]; !ok {
					t.Errorf("variable %s lists %q, not %s", v.Name, slices.Sorted(maps.Keys(got)), want)
				}
			}
			t.Logf("variable %s: %q", v.Name, slices.Sorted(maps.Keys(got)))
		}
		// The realm variable's All (.*) matches series without a realm
		// label, as a router serving one realm exports them: Prometheus
		// reads a missing label as the empty value, which .* matches.
		all := prom.Query(t, `count(up{job="wamp-router",realm=~".*"})`, "")
		if n, ok := all[""]; !ok || n != 2 {
			t.Errorf(`up{realm=~".*"}: %v, want the two targets, which have no realm label`, all)
		}
		sessions := prom.Query(t, `sum by (realm) (wamp_router_sessions{realm=~".*"})`, "realm")
		if _, ok := sessions[""]; !ok || sessions[secondRealm] != 1 || len(sessions) != 3 {
			t.Errorf(`wamp_router_sessions{realm=~".*"} by realm: %v; want the one-realm router's (no label) and both realms of the other`, sessions)
		}
		// One realm chosen: only its series.
		chosen := prom.Query(t, fmt.Sprintf(`sum by (realm) (wamp_router_sessions{realm=~"%s"})`, secondRealm), "realm")
		if len(chosen) != 1 || chosen[secondRealm] != 1 {
			t.Errorf(`wamp_router_sessions{realm=~"%s"} by realm: %v, want its one session`, secondRealm, chosen)
		}
	})

	for _, p := range d.GraphPanels() {
		// A slash in a subtest's name would read as a level: "Calls/s" runs as "Calls per s".
		t.Run(strings.ReplaceAll(p.Title, "/", " per "), func(t *testing.T) {
			for _, tg := range p.Targets {
				t.Run(tg.RefID, func(t *testing.T) {
					expr, err := grafana.ExpandVariables(tg.Expr, values)
					if err != nil {
						t.Fatalf("panel %q: %v in %s", p.Title, err, tg.Expr)
					}
					checkPanelQuery(t, prom, p.Title, tg, expr)
				})
			}
		})
	}

	if writePicture {
		// History for the picture: pictureHistory of scrapes.
		testkit.Eventually(t, pictureHistory+time.Minute, "the picture's history scraped", windowFull(pictureHistory))
		end := time.Now().Truncate(pictureStep)
		start := end.Add(-pictureHistory)
		// The first rate windows hold the first scrapes, whose rates
		// Prometheus cannot extrapolate back: they would ramp up.
		if first := promStart.Add(2 * rateWindow); first.After(start) {
			start = first.Truncate(pictureStep).Add(pictureStep)
		}
		axis := grafana.TimeAxis{Start: start, Step: pictureStep, N: int(end.Sub(start)/pictureStep) + 1}
		page := grafana.Render(d, queryPanelHistory(t, prom, d, axis), axis)
		if err := grafana.WriteScreenshot(browser, page, dashboardPicture); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d panels, %v of history", dashboardPicture, len(d.GraphPanels()), end.Sub(start))
	}

	stopTraffic()
	t.Log(phpCaller.Stop("writer:"))
	t.Log(phpCallee.Stop("callee:"))
}

// idleTargets are the queries the test's traffic leaves at zero, by panel
// and refId (none: all of the panel's): limits it does not reach, losses
// and rejections it does not cause, and TCP log connections (the PHP
// processes log over UDP). Every other query must show traffic.
var idleTargets = map[string][]string{
	"Calls not tracked/s":              nil,
	"WebSocket rejections/s by reason": nil,
	"Bad log lines/s by reason":        nil,
	"Log path losses/s":                nil,
	"Log senders and pending calls":    {"B"},
}

func isIdleTarget(panel, refID string) bool {
	refIDs, ok := idleTargets[panel]
	return ok && (refIDs == nil || slices.Contains(refIDs, refID))
}

// secondRealm is the other realm of startTwoRealmRouter's router.
const secondRealm = "realm2"

// startTwoRealmRouter runs a router serving harness.Realm and secondRealm,
// with one session in each, until the test ends.
func startTwoRealmRouter(t *testing.T) *harness.Instance {
	t.Helper()
	ls := harness.Listeners(t, false)
	harness.RunApp(t, app.Config{OtherRealms: []string{secondRealm}}, ls)
	multi := &harness.Instance{WAMPURL: "ws://" + ls.WAMP.Addr().String() + "/", MetricsURL: "http://" + ls.Metrics.Addr().String()}
	for _, realm := range []string{harness.Realm, secondRealm} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.ConnectNet(ctx, multi.WAMPURL, client.Config{Realm: realm, Serialization: serialize.JSON, Logger: testkit.QuietStdLog()})
		cancel()
		if err != nil {
			t.Fatalf("join %s: %v", realm, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	testkit.Eventually(t, 10*time.Second, "a session in each realm", func() (any, bool) {
		s := multi.Scrape(t)
		a, _ := s.Gauge("wamp_router_sessions", "realm", harness.Realm)
		b, _ := s.Gauge("wamp_router_sessions", "realm", secondRealm)
		return fmt.Sprintf("%v and %v", a, b), a == 1 && b == 1
	})
	return multi
}

// checkPanelQuery runs one target's expr as Grafana would at the end of
// its range, and fails unless it returns series, some of them a number
// (not only NaN: a panel with nothing to draw), each with the labels the
// legend shows, and, unless it is an idle target, some above zero over
// the last rate window (a gauge may be 0 at one instant).
func checkPanelQuery(t *testing.T, prom *harness.Prometheus, panel string, tg grafana.Target, expr string) {
	t.Helper()
	// The query itself: it must be valid and give an instant vector.
	prom.Query(t, expr, "")
	count := prom.Query(t, "count(\n"+expr+"\n)", "")
	series, ok := count[""]
	if !ok {
		t.Fatalf("panel %q %s: empty vector from\n%s", panel, tg.RefID, expr)
	}
	if numbers := prom.Query(t, "count(\n(\n"+expr+"\n) >= -Inf\n)", ""); len(numbers) == 0 {
		t.Errorf("panel %q %s: %v series, every one NaN, from\n%s", panel, tg.RefID, series, expr)
	}
	for _, label := range grafana.LegendLabels(tg.LegendFormat) {
		by := prom.Query(t, fmt.Sprintf("count by (%s) (\n%s\n)", label, expr), label)
		if _, unlabelled := by[""]; unlabelled {
			t.Errorf("panel %q %s: legend %q, but series without %s from\n%s", panel, tg.RefID, tg.LegendFormat, label, expr)
		}
	}
	highest := prom.Query(t, fmt.Sprintf("max(max_over_time((\n%s\n)[%s:%s]))",
		expr, model.Duration(rateWindow), model.Duration(scrapeInterval)), "")[""]
	if !isIdleTarget(panel, tg.RefID) && !(highest > 0) {
		t.Errorf("panel %q %s: %v series, none above 0 over the last %v, though the test's traffic drives it:\n%s",
			panel, tg.RefID, series, rateWindow, expr)
	}
	t.Logf("%v series, highest %.4g", series, highest)
}

// driveDashboardTraffic starts nexus clients that make every kind of
// traffic the dashboard shows, until the returned stop (also called when
// the test ends), which waits for them:
//
//   - dash.ok answered in 1–25 ms, at a rate that swells and ebbs over a
//     minute (so that the picture has shape);
//   - dash.fail answered with one of two application errors;
//   - dash.slow called with a 50 ms timeout option it never meets: the
//     dealer answers wamp.error.timeout and INTERRUPTs the callee;
//   - dash.nobody, which no one registers;
//   - sessions that join, register and subscribe, unregister and
//     unsubscribe, take a call of dash.gone and leave before answering it;
//   - publications to two topics, with a subscriber to each.
func driveDashboardTraffic(t *testing.T, in *harness.Instance) (stop func()) {
	t.Helper()
	callee := in.Connect(t, serialize.JSON)
	var failures atomic.Int64
	handlers := map[string]client.InvocationHandler{
		"dash.ok": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
			select {
			case <-time.After(time.Millisecond + rand.N(24*time.Millisecond)): // the work
				return client.InvokeResult{Args: wamp.List{"ok"}}
			case <-ctx.Done():
				return client.InvocationCanceled
			}
		},
		"dash.fail": func(context.Context, *wamp.Invocation) client.InvokeResult {
			if failures.Add(1)%3 == 0 {
				return client.InvokeResult{Err: "app.error.not_found"}
			}
			return client.InvokeResult{Err: "app.error.invalid_argument"}
		},
		"dash.slow": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
			<-ctx.Done() // the dealer's INTERRUPT, on the CALL's timeout option
			return client.InvocationCanceled
		},
	}
	for proc, h := range handlers {
		if err := callee.Register(proc, h, nil); err != nil {
			t.Fatalf("register %s: %v", proc, err)
		}
	}
	topics := []string{"dash.ticks", "dash.news"}
	subscriber := in.Connect(t, serialize.JSON)
	for _, topic := range topics {
		if err := subscriber.Subscribe(topic, func(*wamp.Event) {}, nil); err != nil {
			t.Fatalf("subscribe %s: %v", topic, err)
		}
	}
	caller := in.Connect(t, serialize.MSGPACK)
	publisher := in.Connect(t, serialize.JSON)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	began := time.Now()
	// every runs f every period (times swell(), if given) until ctx ends.
	every := func(period time.Duration, swell bool, f func()) {
		wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				f()
				next := period
				if swell { // between 0.4 and 1.6 times the period, over a minute
					next = time.Duration(float64(period) * (1 + 0.6*math.Sin(2*math.Pi*time.Since(began).Seconds()/60)))
				}
				timer.Reset(next)
			}
		})
	}
	// call calls proc and fails the test on an answer other than want (a
	// URI prefix), unless the traffic is stopping.
	call := func(c *client.Client, proc string, opts wamp.Dict, want string) {
		_, err := c.Call(ctx, proc, opts, nil, nil, nil)
		if got := harness.ErrorURI(err); ctx.Err() == nil && (want == "" && got != "" || !strings.HasPrefix(got, want)) {
			t.Errorf("call %s: error %q, want %q", proc, got, want)
		}
	}
	for range 4 { // concurrent callers: calls in flight
		every(40*time.Millisecond, true, func() { call(caller, "dash.ok", nil, "") })
	}
	every(150*time.Millisecond, false, func() { call(caller, "dash.fail", nil, "app.error.") })
	every(200*time.Millisecond, false, func() { call(caller, "dash.slow", wamp.Dict{"timeout": 50}, "wamp.error.timeout") })
	every(300*time.Millisecond, false, func() { call(caller, "dash.nobody", nil, "wamp.error.no_such_procedure") })
	every(50*time.Millisecond, true, func() {
		if err := publisher.Publish(topics[0], nil, wamp.List{time.Now().UnixNano()}, nil); err != nil && ctx.Err() == nil {
			t.Errorf("publish: %v", err)
		}
	})
	every(250*time.Millisecond, false, func() {
		if err := publisher.Publish(topics[1], nil, wamp.List{"news"}, nil); err != nil && ctx.Err() == nil {
			t.Errorf("publish: %v", err)
		}
	})
	every(400*time.Millisecond, false, func() { sessionChurn(ctx, t, in, caller) })

	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(stop) // before the clients close: cleanups run last first
	return stop
}

// sessionChurn is one short session: it joins, registers a procedure and
// subscribes a topic, unregisters and unsubscribes, then registers
// dash.gone, and leaves while caller's call of it is waiting for its
// answer.
func sessionChurn(ctx context.Context, t *testing.T, in *harness.Instance, caller *client.Client) {
	c, err := client.ConnectNet(ctx, in.WAMPURL, client.Config{Realm: harness.Realm, Serialization: serialize.JSON, Logger: testkit.QuietStdLog()})
	if err != nil {
		if ctx.Err() == nil {
			t.Errorf("churn: connect: %v", err)
		}
		return
	}
	defer c.Close()
	noop := func(context.Context, *wamp.Invocation) client.InvokeResult { return client.InvokeResult{} }
	steps := []func() error{
		func() error { return c.Register("dash.churn", noop, nil) },
		func() error { return c.Subscribe("dash.ticks", func(*wamp.Event) {}, nil) },
		func() error { return c.Unregister("dash.churn") },
		func() error { return c.Unsubscribe("dash.ticks") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			if ctx.Err() == nil {
				t.Errorf("churn: %v", err)
			}
			return
		}
	}
	invoked := make(chan struct{}, 1)
	err = c.Register("dash.gone", func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
		invoked <- struct{}{}
		select { // never answered: the session leaves first
		case <-ctx.Done():
		case <-c.Done():
		}
		return client.InvocationCanceled
	}, nil)
	if err != nil {
		if ctx.Err() == nil {
			t.Errorf("churn: register dash.gone: %v", err)
		}
		return
	}
	answered := make(chan error, 1)
	go func() {
		_, err := caller.Call(ctx, "dash.gone", nil, nil, nil, nil)
		answered <- err
	}()
	select {
	case <-invoked:
		c.Close() // leaves with the call pending
	case err := <-answered: // refused before the invocation, or stopping
		answered <- err
	}
	select {
	case err := <-answered:
		if err == nil && ctx.Err() == nil {
			t.Error("churn: dash.gone answered, though its callee left")
		}
	case <-time.After(10 * time.Second):
		t.Error("churn: dash.gone still not answered 10s after its callee left")
		<-answered // the caller's ctx ends with the traffic
	}
}

// The picture: pictureHistory of traffic (three swells of dash.ok), one
// point every pictureStep, drawn by grafana.Render and photographed by
// headless Chromium (grafana.WriteScreenshot).
const (
	pictureHistory = 3 * time.Minute
	pictureStep    = 2 * time.Second
)

// queryPanelHistory reads, for every panel, each target's series at every
// instant of axis, with the variables as the dashboard opens. Prometheus
// answers an instant query at one instant as a range query would there:
// the expression as a one-step subquery evaluated @ that instant.
func queryPanelHistory(t *testing.T, prom *harness.Prometheus, d *grafana.Dashboard, axis grafana.TimeAxis) map[int][]grafana.Series {
	t.Helper()
	values := d.VariableValues(rateWindow)
	step := model.Duration(axis.Step).String()
	out := map[int][]grafana.Series{}
	for _, p := range d.GraphPanels() {
		for _, tg := range p.Targets {
			expr, err := grafana.ExpandVariables(tg.Expr, values)
			if err != nil {
				t.Fatalf("panel %q: %v", p.Title, err)
			}
			labels := grafana.LegendLabels(tg.LegendFormat)
			key := ""
			if len(labels) > 0 {
				key = "dashboard_legend"
				expr = fmt.Sprintf("label_join(\n%s\n, %q, %q, %s)", expr, key, grafana.LegendSeparator, quoteAll(labels))
			}
			byKey := map[string][]float64{}
			for i := range axis.N {
				q := fmt.Sprintf("last_over_time((\n%s\n)[%s:%s] @ %d)", expr, step, step, axis.At(i).Unix())
				for k, v := range prom.Query(t, q, key) {
					if byKey[k] == nil {
						byKey[k] = slices.Repeat([]float64{math.NaN()}, axis.N)
					}
					byKey[k][i] = v
				}
			}
			for _, k := range slices.Sorted(maps.Keys(byKey)) {
				out[p.ID] = append(out[p.ID], grafana.Series{Legend: grafana.FormatLegend(tg.LegendFormat, labels, k), Values: byKey[k]})
			}
		}
	}
	return out
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
