package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

// runAttack runs the hostile-client attacks of issue 10, each against a
// fresh router process, with a normal client alongside, and prints one
// markdown table row per attack.
func runAttack(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wampload attack", flag.ContinueOnError)
	scaleName := fs.String("scale", "full", "full: the issue's figures; small: about 1/100 of them, seconds per attack")
	only := fs.String("only", "", "comma-separated attack names or numbers to run (default: all)")
	routerBin := fs.String("router", "", "router binary to attack (default: go build ./cmd/router into a temporary directory)")
	rssLimit := fs.Float64("rss-limit", 512, "peak RSS, in MiB, above which an attack fails")
	rssKill := fs.Float64("rss-kill", 6144, "RSS, in MiB, at which the router is killed to protect the machine")
	upstreamKind := fs.String("upstream", "", "attack the observing proxy instead: the router under attack runs -upstream in front of a fresh "+
		"`router` (cmd/router, embedded) or stock nexus (stock: cmd/stocknexus) per attack; empty: the embedded router")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var scale attackScale
	switch *scaleName {
	case "full":
		scale.full = true
	case "small":
	default:
		return fmt.Errorf("-scale %q: want full or small", *scaleName)
	}
	selected, err := selectAttacks(*only)
	if err != nil {
		return err
	}
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "wampload-attack")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// build builds a command of this module (from anywhere inside it).
	build := func(name string) (string, error) {
		bin := filepath.Join(dir, name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/php-wamp-observer/php-wamp-observer/cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
		return bin, nil
	}
	bin := *routerBin
	if bin == "" {
		if bin, err = build("router"); err != nil {
			return err
		}
	}
	var up upstreamSpec
	what := "the router"
	switch *upstreamKind {
	case "":
	case "router":
		up = upstreamSpec{kind: "router", bin: bin}
		what = "the observing proxy (-upstream) in front of cmd/router"
	case "stock":
		up = upstreamSpec{kind: "stock"}
		if up.bin, err = build("stocknexus"); err != nil {
			return err
		}
		what = "the observing proxy (-upstream) in front of stock nexus (cmd/stocknexus)"
	default:
		return fmt.Errorf("-upstream %q: want router, stock or nothing", *upstreamKind)
	}
	flags, err := routerFlags(ctx, bin)
	if err != nil {
		return err
	}
	if up.kind != "" && !flags["upstream"] {
		return fmt.Errorf("-upstream %s: %s has no -upstream flag", up.kind, bin)
	}
	fmt.Fprintf(out, "### Attacks on %s, %s scale (%s; router flags detected: %s)\n\n", what, *scaleName, time.Now().Format("2006-01-02"), strings.Join(sortedKeys(flags), " "))
	if up.kind != "" {
		fmt.Fprintln(out, "Peak RSS, goroutines and fds are the proxy's; the upstream's peak RSS is in the verdict, and its death is a failure.")
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "| attack | inputs | peak RSS | peak goroutines | peak fds | normal client (ok / calls, p50, worst) | exit after SIGTERM | verdict |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|")
	for _, a := range selected {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintln(out, runOneAttack(ctx, a, bin, up, flags, scale, *rssLimit, *rssKill).row())
	}
	fmt.Fprintln(out)
	return nil
}

// attackScale is full (the figures) or small (about 1/100).
type attackScale struct{ full bool }

// n is a count at this scale.
func (s attackScale) n(full int) int {
	if s.full {
		return full
	}
	return max(1, full/100)
}

// d is a duration at this scale: full, or small.
func (s attackScale) d(full, small time.Duration) time.Duration {
	if s.full {
		return full
	}
	return small
}

// An attackSpec is one attack: what the router is started with, and what
// is done to it.
type attackSpec struct {
	name string
	// args are extra router flags; flags holds the ones the router has.
	args func(flags map[string]bool, s attackScale) []string
	// limit bounds the attack at full scale; small scale gets 10s.
	limit time.Duration
	// noGoroutineScrapes: scraping during the attack would be the attack.
	noGoroutineScrapes bool
	run                func(e *attackEnv) error
}

func selectAttacks(only string) ([]attackSpec, error) {
	all := attacks()
	if only == "" {
		return all, nil
	}
	var out []attackSpec
	for w := range strings.SplitSeq(only, ",") {
		w = strings.TrimSpace(w)
		i := slices.IndexFunc(all, func(a attackSpec) bool { return a.name == w })
		if n, err := strconv.Atoi(w); err == nil && n >= 1 && n <= len(all) {
			i = n - 1
		}
		if i < 0 {
			var names []string
			for _, a := range all {
				names = append(names, a.name)
			}
			return nil, fmt.Errorf("-only: no attack %q; have %s (or 1..%d)", w, strings.Join(names, ", "), len(all))
		}
		out = append(out, all[i])
	}
	return out, nil
}

// routerFlags lists the flags `router -h` prints, so that flags other
// engineers add are passed only once they exist.
func routerFlags(ctx context.Context, bin string) (map[string]bool, error) {
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["wamp"] || !flags["metrics"] {
		return nil, fmt.Errorf("%s -h lists no -wamp and -metrics flags:\n%s", bin, out)
	}
	return flags, nil
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, "-"+k)
	}
	slices.Sort(ks)
	return ks
}

// raiseFileLimit lifts this process's soft RLIMIT_NOFILE to its hard one:
// the slowloris attack holds thousands of sockets.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// attackEnv is what an attack works with: the router under attack, its
// addresses, and where the attack reports.
type attackEnv struct {
	ctx                            context.Context
	t                              *target
	scale                          attackScale
	flags                          map[string]bool
	wampAddr, metricsAddr, logAddr string
	normal                         *normalClient
	http                           *http.Client

	mu       sync.Mutex
	inputs   []string
	notes    []string
	problems []string
	closers  []io.Closer
	wg       sync.WaitGroup // goroutines the attack started
}

func (e *attackEnv) input(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inputs = append(e.inputs, fmt.Sprintf(format, args...))
}

func (e *attackEnv) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.notes = append(e.notes, fmt.Sprintf(format, args...))
}

func (e *attackEnv) problem(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.problems = append(e.problems, fmt.Sprintf(format, args...))
}

// track closes c when the attack is over (after the router's exit).
func (e *attackEnv) track(c io.Closer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, c)
}

func (e *attackEnv) closeAll() {
	e.mu.Lock()
	cs := e.closers
	e.closers = nil
	e.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	e.wg.Wait()
}

// rssMiB is the router's resident set now.
func (e *attackEnv) rssMiB() float64 { return e.t.statusMiB("VmRSS") }

// attackResult is one row of the table.
type attackResult struct {
	name, inputs                  string
	peakRSS                       float64
	peakGoroutines, peakFDs       int
	normal                        normalStats
	exitTook                      time.Duration
	exited, diedBefore, attempted bool
	problems, notes               []string
}

func (r attackResult) row() string {
	gor := "—"
	if r.peakGoroutines > 0 {
		gor = strconv.Itoa(r.peakGoroutines)
	}
	exit := "—"
	switch {
	case r.diedBefore:
		exit = "had died"
	case !r.exited:
		exit = fmt.Sprintf("killed after %.1f s", r.exitTook.Seconds())
	case r.attempted:
		exit = r.exitTook.Round(time.Millisecond).String()
	}
	verdict := "ok"
	if len(r.problems) > 0 {
		verdict = "**FAIL**: " + strings.Join(r.problems, "; ")
	}
	if len(r.notes) > 0 {
		verdict += " (" + strings.Join(r.notes, "; ") + ")"
	}
	cell := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }
	return fmt.Sprintf("| %s | %s | %.0f MiB | %s | %d | %s | %s | %s |", r.name, cell(r.inputs), r.peakRSS, gor, r.peakFDs,
		cell(r.normal.String()), exit, cell(verdict))
}

// upstreamSpec is what the router under attack relays to, when it is the
// observing proxy: kind router (bin is cmd/router) or stock (bin is
// cmd/stocknexus); kind "" when it is the embedded router.
type upstreamSpec struct{ kind, bin string }

// start starts a fresh upstream and returns it with its WebSocket URL.
func (u upstreamSpec) start(ctx context.Context) (*target, string, error) {
	addr := freePort()
	var t *target
	var err error
	if u.kind == "stock" {
		t, err = startProcess(ctx, nil, "http://"+addr+"/", u.bin, "-wamp", addr)
	} else {
		t, err = startTarget(ctx, u.bin, "-wamp", addr, "-log", freePort(), "-timeout", "500ms")
	}
	return t, "ws://" + addr + "/", err
}

// runOneAttack starts a fresh router (and its upstream, for the proxy), a
// sampler and a normal client, runs the attack within its time limit, and
// then stops everything it started.
func runOneAttack(ctx context.Context, a attackSpec, bin string, up upstreamSpec, flags map[string]bool, s attackScale, rssLimit, rssKill float64) attackResult {
	res := attackResult{name: a.name}
	wampAddr, logAddr := freePort(), freePort()
	args := []string{"-wamp", wampAddr, "-log", logAddr, "-timeout", "500ms"}
	var upstream *target
	if up.kind != "" {
		var upURL string
		var err error
		if upstream, upURL, err = up.start(ctx); err != nil {
			res.problems = append(res.problems, "upstream did not start: "+err.Error())
			return res
		}
		// After the proxy: its SIGTERM is tried with the upstream there.
		defer upstream.stop()
		args = append(args, "-upstream", upURL)
	}
	if a.args != nil {
		args = append(args, a.args(flags, s)...)
	}
	t, err := startTarget(ctx, bin, args...)
	if err != nil {
		res.problems = append(res.problems, "router did not start: "+err.Error())
		return res
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 4}
	e := &attackEnv{ctx: ctx, t: t, scale: s, flags: flags, wampAddr: wampAddr, logAddr: logAddr,
		metricsAddr: strings.TrimSuffix(strings.TrimPrefix(t.metricsURL, "http://"), "/metrics"),
		http:        &http.Client{Transport: transport, Timeout: 10 * time.Second}}
	defer transport.CloseIdleConnections()
	smp := startSampler(t, e.http, !a.noGoroutineScrapes, rssKill)

	e.normal, err = startNormalClient(ctx, "ws://"+wampAddr+"/")
	if err != nil {
		e.problem("normal client: %v", err)
	} else {
		limit := s.d(a.limit, 10*time.Second)
		actx, cancel := context.WithTimeout(ctx, limit)
		e.ctx = actx
		if err := a.run(e); err != nil {
			e.problem("%v", err)
		}
		if actx.Err() != nil && ctx.Err() == nil {
			e.note("stopped at its %v limit", limit)
		}
		cancel()
		res.normal = e.normal.stop()
	}
	if t.died() {
		res.diedBefore = true
		if smp.killedForRSS.Load() {
			e.problem("killed by wampload: RSS passed %.0f MiB", rssKill)
		} else {
			e.problem("the router died: %s", deathOf(t))
		}
	} else {
		// Shutdown with the attack's connections still open: it must not
		// wait for them.
		res.exitTook, res.exited = t.stop()
		res.attempted = true
		if !res.exited || res.exitTook >= 5*time.Second {
			e.problem("exit after SIGTERM took %.1f s (limit 5 s)", res.exitTook.Seconds())
		}
	}
	e.closeAll()
	smp.stop()
	res.peakRSS, res.peakGoroutines, res.peakFDs = smp.peaks()
	if res.peakRSS > rssLimit {
		e.problem("peak RSS %.0f MiB over the %.0f MiB limit", res.peakRSS, rssLimit)
	}
	if upstream != nil {
		if upstream.died() {
			e.problem("the upstream (%s) died: %s", up.kind, deathOf(upstream))
		} else {
			e.note("upstream (%s) peak RSS %.0f MiB", up.kind, upstream.peakRSS())
		}
	}
	if res.normal.total > 0 && res.normal.ok < res.normal.total {
		e.problem("normal client: %d of %d calls failed (%s)", res.normal.total-res.normal.ok, res.normal.total, res.normal.failureList())
	}
	res.inputs = strings.Join(e.inputs, "; ")
	res.problems, res.notes = e.problems, e.notes
	return res
}

// deathOf says how the router ended: its exit status and the first line of
// a panic, if it printed one.
func deathOf(t *target) string {
	msg := fmt.Sprint(t.waitErr)
	if t.waitErr == nil {
		msg = "exit status 0"
	}
	for line := range strings.Lines(t.stderr.String()) {
		if strings.HasPrefix(line, "panic:") {
			return msg + ", " + strings.TrimSpace(line)
		}
	}
	return msg
}

// sampler reads the router's peak RSS, file descriptors and goroutines
// every 100ms.
type sampler struct {
	t    *target
	done chan struct{}
	wg   sync.WaitGroup

	killedForRSS atomic.Bool

	mu                    sync.Mutex
	hwm                   float64
	maxFDs, maxGoroutines int
}

func startSampler(t *target, hc *http.Client, goroutines bool, rssKill float64) *sampler {
	s := &sampler{t: t, done: make(chan struct{})}
	every := func(f func()) {
		s.wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				f()
				select {
				case <-s.done:
					return
				case <-tick.C:
				}
			}
		})
	}
	every(func() {
		hwm := t.statusMiB("VmHWM")
		fds := countFDs(t.cmd.Process.Pid)
		if hwm > rssKill && !t.died() {
			s.killedForRSS.Store(true)
			_ = t.cmd.Process.Kill()
		}
		s.mu.Lock()
		s.hwm, s.maxFDs = max(s.hwm, hwm), max(s.maxFDs, fds)
		s.mu.Unlock()
	})
	if goroutines {
		// A separate loop: a slow scrape must not delay the /proc samples.
		every(func() {
			if t.died() {
				return
			}
			n, err := scrapeValue(hc, t.metricsURL, "go_goroutines", nil)
			if err == nil {
				s.mu.Lock()
				s.maxGoroutines = max(s.maxGoroutines, int(n))
				s.mu.Unlock()
			}
		})
	}
	return s
}

func (s *sampler) stop() {
	close(s.done)
	s.wg.Wait()
}

func (s *sampler) peaks() (rss float64, goroutines, fds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hwm, s.maxGoroutines, s.maxFDs
}

func countFDs(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return len(names)
}

// scrape reads the families of a scrape, in the delimited protobuf format,
// stopping at the first for which stop returns true (nil: read them all).
func scrape(hc *http.Client, url string, stop func(*dto.MetricFamily) bool) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	rsp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape: %s", rsp.Status)
	}
	dec := expfmt.NewDecoder(rsp.Body, expfmt.ResponseFormat(rsp.Header))
	mfs := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if errors.Is(err, io.EOF) {
				return mfs, nil
			}
			return mfs, err
		}
		mfs[mf.GetName()] = mf
		if stop != nil && stop(mf) {
			return mfs, nil
		}
	}
}

// scrapeValue is the value of one series: a gauge's or counter's value, a
// summary's or histogram's count. labels selects the series (nil: the
// first). Families after it are not read.
func scrapeValue(hc *http.Client, url, family string, labels map[string]string) (float64, error) {
	mfs, err := scrape(hc, url, func(mf *dto.MetricFamily) bool { return mf.GetName() == family })
	if err != nil {
		return 0, err
	}
	mf, ok := mfs[family]
	if !ok {
		return 0, fmt.Errorf("no %s in the scrape", family)
	}
	v, ok := seriesValue(mf, labels)
	if !ok {
		return 0, fmt.Errorf("no %s%v in the scrape", family, labels)
	}
	return v, nil
}

func seriesValue(mf *dto.MetricFamily, labels map[string]string) (float64, bool) {
next:
	for _, m := range mf.GetMetric() {
		for k, v := range labels {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Summary != nil:
			return float64(m.GetSummary().GetSampleCount()), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// normalProcedure is what the normal client calls, on its own callee.
const normalProcedure = "attack.normal"

// normalClient is a well-behaved callee and a caller making one call every
// 50ms with a 2s deadline; every call must succeed.
type normalClient struct {
	url            string
	callee, caller *client.Client
	done           chan struct{}
	wg             sync.WaitGroup
	stats          normalStats // owned by the calling goroutine until wg is done
}

type normalStats struct {
	ok, total int
	latencies []time.Duration
	failures  map[string]int
}

func (s normalStats) worst() time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return slices.Max(s.latencies)
}

func (s normalStats) p50() time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	l := slices.Sorted(slices.Values(s.latencies))
	return l[len(l)/2]
}

func (s normalStats) failureList() string {
	var parts []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range s.failures {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%d× %s", s.failures[k], k))
	}
	return strings.Join(parts, ", ")
}

func (s normalStats) String() string {
	if s.total == 0 {
		return "not run"
	}
	return fmt.Sprintf("%d / %d, p50 %v, worst %v", s.ok, s.total, s.p50().Round(time.Microsecond), s.worst().Round(time.Millisecond))
}

func startNormalClient(ctx context.Context, url string) (*normalClient, error) {
	n := &normalClient{url: url, done: make(chan struct{}), stats: normalStats{failures: map[string]int{}}}
	var err error
	if n.callee, err = connectWithin(ctx, url, 5*time.Second); err != nil {
		return nil, err
	}
	answer := wamp.List{"ok"}
	if err := n.callee.Register(normalProcedure, func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: answer}
	}, nil); err != nil {
		closeClient(n.callee)
		return nil, err
	}
	if n.caller, err = connectWithin(ctx, url, 5*time.Second); err != nil {
		closeClient(n.callee)
		return nil, err
	}
	n.wg.Go(n.loop)
	return n, nil
}

func (n *normalClient) loop() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// One call at once and one after the stop, so that even a short attack
	// is bracketed by calls.
	for last := false; !last; {
		n.call()
		select {
		case <-n.done:
			last = true
		case <-tick.C:
		}
	}
	n.call()
}

func (n *normalClient) call() {
	n.stats.total++
	if n.caller == nil {
		// Lost: join again, as a real client would; that counts as
		// this call's time.
		c, err := connectWithin(context.Background(), n.url, 2*time.Second)
		if err != nil {
			n.stats.failures["cannot join"]++
			return
		}
		n.caller = c
	}
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	t0 := time.Now()
	_, err := n.caller.Call(cctx, normalProcedure, nil, nil, nil, nil)
	took := time.Since(t0)
	cancel()
	if err != nil {
		n.stats.failures[errorName(err)]++
		select {
		case <-n.caller.Done():
			closeClient(n.caller)
			n.caller = nil
		default:
		}
		return
	}
	n.stats.ok++
	n.stats.latencies = append(n.stats.latencies, took)
}

// stop ends the calls and leaves, and returns the figures.
func (n *normalClient) stop() normalStats {
	close(n.done)
	n.wg.Wait()
	if n.caller != nil {
		closeClient(n.caller)
	}
	closeClient(n.callee)
	return n.stats
}

func connectWithin(ctx context.Context, url string, d time.Duration) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return connect(ctx, url, "realm1")
}

// closeClient closes a nexus client, giving up on a router that does not
// answer its GOODBYE.
func closeClient(c *client.Client) {
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}

// rawSession is a WAMP session over a WebSocket this program drives by
// hand: it can send what a nexus client would not, and not read at all.
type rawSession struct {
	*wampraw.Conn
	received atomic.Int64 // messages drain has read
}

type rawOpts struct {
	details      map[string]any // HELLO details; nil: every role (wampraw.AllRoles)
	recvBuf      int            // SO_RCVBUF, to make a non-reader's buffer fill soon; 0: the default
	host, origin string         // Host and Origin headers; empty: the defaults
}

// dialRaw connects and joins. The session is closed when the attack ends.
func (e *attackEnv) dialRaw(o rawOpts) (*rawSession, error) {
	h := http.Header{}
	if o.host != "" {
		h.Set("Host", o.host)
	}
	if o.origin != "" {
		h.Set("Origin", o.origin)
	}
	conn, err := wampraw.Join(e.ctx, "ws://"+e.wampAddr+"/", "realm1",
		wampraw.Options{Header: h, RecvBuf: o.recvBuf, Timeout: 5 * time.Second, Details: o.details})
	if err != nil {
		return nil, err
	}
	e.track(conn)
	return &rawSession{Conn: conn}, nil
}

// drain reads and discards everything, counting messages, until the
// connection closes.
func (e *attackEnv) drain(rs *rawSession) {
	e.wg.Go(func() {
		_ = rs.SetReadDeadline(time.Time{})
		for {
			if _, _, err := rs.NextReader(); err != nil {
				return
			}
			rs.received.Add(1)
		}
	})
}

// waitReceived waits until rs has received n messages, or the attack's
// time is up; it returns how many it had.
func (e *attackEnv) waitReceived(rs *rawSession, n int64, within time.Duration) int64 {
	deadline := time.Now().Add(within)
	for rs.received.Load() < n && time.Now().Before(deadline) && e.ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	return rs.received.Load()
}

// sleep waits for d or the end of the attack's time.
func (e *attackEnv) sleep(d time.Duration) {
	select {
	case <-e.ctx.Done():
	case <-time.After(d):
	}
}

// sessions is the router's wamp_router_sessions.
func (e *attackEnv) sessions() (float64, error) {
	return scrapeValue(e.http, e.t.metricsURL, "wamp_router_sessions", nil)
}
