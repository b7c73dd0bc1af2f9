package observer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// pageRow is one row of the live page as a browser shows it: the numbers
// behind the router's and the PHP caller's cells.
type pageRow struct {
	Procedure  string   `json:"procedure"`
	Rate       *float64 `json:"rate"`
	P50        *float64 `json:"p50"`
	CallerRate *float64 `json:"callerRate"`
	CallerP50  *float64 `json:"callerP50"`
	CalleeRate *float64 `json:"calleeRate"`
}

const readPageRows = `[...document.querySelectorAll("#calls tbody tr")].map(tr => {
  const v = i => tr.children[i].dataset.v === undefined ? null : Number(tr.children[i].dataset.v);
  return {procedure: tr.dataset.procedure, rate: v(1), p50: v(2), callerRate: v(8), callerP50: v(9), calleeRate: v(12)};
})`

// pageTolerance is how far the caller's column may be from the router's on
// the live page: calls/s within 25% (the two families are sampled at the
// same second, but calls end in between), and the caller's p50 at least
// the router's less one bucket (9.05%) and at most one bucket and 10 ms
// above it (what the network and the PHP client add, here on a loaded
// machine).
func withinPageTolerance(r pageRow) bool {
	if r.Rate == nil || r.P50 == nil || r.CallerRate == nil || r.CallerP50 == nil || *r.Rate == 0 {
		return false
	}
	const bucket = 0.0905
	return math.Abs(*r.Rate-*r.CallerRate) <= 0.25**r.Rate &&
		*r.CallerP50 >= *r.P50*(1-bucket) && *r.CallerP50 <= *r.P50*(1+bucket)+10
}

// A real browser on the live page, under the load of the original setup
// (a PHP callee and PHP writers calling hello1..hello9): every procedure
// gets a row with a non-zero rate, and the router's and the callers'
// columns agree. Screenshots (desktop, and phone width in dark mode) are
// saved as artifacts, in $WAMP_OBSERVER_ARTIFACTS or a temporary folder.
func TestTheLivePageInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP processes and a browser")
	}
	browser := harness.RequireTool(t, "chromium")
	in := harness.Start(t, harness.Config{Timeout: 300 * time.Millisecond, Log: true})
	env := []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + harness.Realm, "WAMP_OBSERVER_ADDR=" + in.LogAddr,
		"WRITER_CALL_TIMEOUT_MS=250"}
	callee := harness.StartPHP(t, env, "php/callee.php")
	callee.WaitLine("callee: registered", 10*time.Second)
	for range 4 {
		harness.StartPHP(t, env, "php/writer.php")
	}

	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))...)
	defer stopAlloc()
	browserCtx, stopBrowser := chromedp.NewContext(alloc)
	defer stopBrowser()
	// The metrics port's root: a browser asks for text/html. (The first
	// run starts the browser, whose life is its context's: no timeout.)
	if err := chromedp.Do(browserCtx, chromedp.Navigate(in.MetricsURL+"/")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible("#calls")); err != nil {
		t.Fatal(err)
	}
	var rows []pageRow
	testkit.Eventually(t, 60*time.Second, "nine hello rows, live, the router and the callers agreeing", func() (any, bool) {
		var err error
		if rows, err = chromedp.Run(ctx, chromedp.Evaluate[[]pageRow](readPageRows)); err != nil {
			return err, false
		}
		agreeing := 0
		for _, r := range rows {
			if slices.Contains(hellos, r.Procedure) && withinPageTolerance(r) && r.CalleeRate != nil && *r.CalleeRate > 0 {
				agreeing++
			}
		}
		return fmt.Sprintf("%d of 9 agree: %s", agreeing, describeRows(rows)), agreeing == len(hellos)
	})
	t.Logf("the page: %s", describeRows(rows))

	dir := os.Getenv("WAMP_OBSERVER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "php-wamp-observer-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	desktop, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	dark := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, dark)
			return err
		}),
		chromedp.Sleep(1500*time.Millisecond), // one redraw at the new size, for the picture (no condition waits on it)
	); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatal(err)
	}
	phone, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("at phone width the page is wider than the screen (only the table may scroll)")
	}
	for name, b := range map[string][]byte{"live-page.png": desktop, "live-page-phone-dark.png": phone} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots in %s", dir)
}

func describeRows(rows []pageRow) string {
	f := func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f", *p)
	}
	s := ""
	for _, r := range rows {
		s += fmt.Sprintf("\n  %s: %s/s p50 %s ms; caller %s/s p50 %s ms; callee %s/s", r.Procedure, f(r.Rate), f(r.P50), f(r.CallerRate), f(r.CallerP50), f(r.CalleeRate))
	}
	return s
}

// At / the metrics stay exactly what they were for everything but a
// browser: Prometheus, curl and a bare request get the exposition /metrics
// serves, in the format they ask for; a browser gets the live page.
func TestTheRootServesMetricsToAllButBrowsers(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: time.Second, Log: true})
	in.CallThroughEachPath(t)
	for _, accept := range []string{
		"", "*/*",
		"application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
	} {
		rootType, root := in.Get(t, "/", accept)
		metricsType, metrics := in.Get(t, "/metrics", accept)
		if rootType != metricsType {
			t.Errorf("Accept %q: / is %q, /metrics %q", accept, rootType, metricsType)
			continue
		}
		got, want := ourFamilies(t, rootType, root), ourFamilies(t, metricsType, metrics)
		if len(want) == 0 || !maps.EqualFunc(got, want, func(a, b *dto.MetricFamily) bool { return proto.Equal(a, b) }) {
			t.Errorf("Accept %q: / and /metrics differ (%d and %d families)", accept, len(got), len(want))
		}
	}
	ct, page := in.Get(t, "/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if !strings.HasPrefix(ct, "text/html") || !bytes.Contains(page, []byte(`<table id="calls">`)) {
		t.Errorf("a browser at / got %q:\n%.200s", ct, page)
	}
}

// ourFamilies parses a scrape and keeps the program's own families
// (wamp_*), whose values do not move between two scrapes without traffic.
func ourFamilies(t *testing.T, contentType string, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(body), expfmt.Format(contentType))
	out := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decode %s: %v", contentType, err)
		}
		if strings.HasPrefix(mf.GetName(), "wamp_") {
			out[mf.GetName()] = mf
		}
	}
}

// The page outlives the router: while it is away the page says so and
// keeps asking, and it goes on with the new process once that is up on
// the same port.
func TestTheLivePageSurvivesARouterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	browser := harness.RequireTool(t, "chromium")
	ls := harness.Listeners(t, false)
	metricsAddr := ls.Metrics.Addr().String()
	stop := harness.RunApp(t, app.Config{}, ls)

	alloc, stopAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU)...)
	defer stopAlloc()
	browserCtx, stopBrowser := chromedp.NewContext(alloc)
	defer stopBrowser()
	if err := chromedp.Do(browserCtx, chromedp.Navigate("http://"+metricsAddr+"/ui")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 60*time.Second)
	defer cancel()
	status := func(want string) {
		t.Helper()
		testkit.Eventually(t, 20*time.Second, "the page's status says "+want, func() (any, bool) {
			s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("status").textContent`))
			return s, err == nil && strings.Contains(s, want)
		})
	}
	status("live")
	stop()
	status("router unreachable")

	wamp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	again, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		wamp.Close()
		t.Fatal(err)
	}
	harness.RunApp(t, app.Config{}, app.Listeners{WAMP: wamp, Metrics: again})
	status("live")
}
