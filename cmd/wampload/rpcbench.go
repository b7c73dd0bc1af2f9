package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/router"
)

// The RPC section of bench: stock nexus (cmd/stocknexus, nexus's own
// WebsocketServer) as the anchor, and the router with its observer off and
// on, in rounds that run all three back to back in a rotating order.

// rpcSide is one of the three programs an RPC shape runs against.
type rpcSide string

const (
	sideStock rpcSide = "stock" // cmd/stocknexus
	sideOff   rpcSide = "off"   // cmd/router -observe=false
	sideOn    rpcSide = "on"    // cmd/router
	sideProxy rpcSide = "proxy" // cmd/router -upstream in front of cmd/stocknexus
)

var rpcSides = []rpcSide{sideStock, sideOff, sideOn}

// rpcBins are the built programs the sides run.
type rpcBins struct{ router, stock string }

// rpcShape is one load: C callers each keeping W calls outstanding, a
// payload each way, over some procedures.
type rpcShape struct {
	name                string
	callers, window     int
	payload, procedures int
}

func (s rpcShape) label() string {
	l := fmt.Sprintf("%d×%d", s.callers, s.window)
	if s.payload > 0 {
		l += fmt.Sprintf(", %d KiB", s.payload>>10)
	}
	if s.procedures > 0 {
		l += fmt.Sprintf(", %d procedures", s.procedures)
	}
	return l
}

func rpcShapes() []rpcShape {
	return []rpcShape{
		{name: "1x1", callers: 1, window: 1},
		{name: "4x1", callers: 4, window: 1},
		{name: "16x1", callers: 16, window: 1},
		{name: "1x32", callers: 1, window: 32},
		{name: "16x32", callers: 16, window: 32},
		{name: "100x1", callers: 100, window: 1},
		{name: "16x1-10KiB", callers: 16, window: 1, payload: 10 << 10},
		{name: "16x1-100KiB", callers: 16, window: 1, payload: 100 << 10},
		{name: "16x1-1000procs", callers: 16, window: 1, procedures: 1000},
	}
}

func rpcShapeNames() []string {
	var names []string
	for _, s := range rpcShapes() {
		names = append(names, s.name)
	}
	return names
}

// selectRPCShapes picks shapes by name (x or ×); empty selects them all.
func selectRPCShapes(list string) ([]rpcShape, error) {
	all := rpcShapes()
	if strings.TrimSpace(list) == "" {
		return all, nil
	}
	var picked []rpcShape
	for name := range strings.SplitSeq(list, ",") {
		name = strings.ReplaceAll(strings.TrimSpace(name), "×", "x")
		i := slices.IndexFunc(all, func(s rpcShape) bool { return strings.EqualFold(s.name, name) })
		if i < 0 {
			return nil, fmt.Errorf("unknown RPC shape %q; known: %s", name, strings.Join(rpcShapeNames(), ","))
		}
		picked = append(picked, all[i])
	}
	return picked, nil
}

// pinning places the router on CPU 0 and this process (the load) on CPU 1
// with taskset, where there are two CPUs and taskset is installed.
type pinning struct {
	router  []string // the prefix that starts a program on CPU 0; nil: unpinned
	note    string   // what was pinned, for the header
	restore func()   // gives this process back the CPUs it had
}

func pinRPC(ctx context.Context) pinning {
	nothing := func() {}
	if runtime.NumCPU() < 2 {
		return pinning{note: "unpinned (one CPU): the router and the load share it", restore: nothing}
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return pinning{note: "unpinned (no taskset; install util-linux): the router and the load share the CPUs", restore: nothing}
	}
	pid := strconv.Itoa(os.Getpid())
	out, err := exec.CommandContext(ctx, taskset, "-c", "-p", pid).Output()
	_, was, found := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if err != nil || !found {
		return pinning{note: "unpinned (taskset -p failed): the router and the load share the CPUs", restore: nothing}
	}
	if out, err := exec.CommandContext(ctx, taskset, "-a", "-c", "-p", "1", pid).CombinedOutput(); err != nil {
		return pinning{note: fmt.Sprintf("unpinned (taskset: %v %s): the router and the load share the CPUs", err, strings.TrimSpace(string(out))),
			restore: nothing}
	}
	return pinning{
		router: []string{taskset, "-c", "0"},
		note:   "pinned with taskset: the router process of each side on CPU 0, the load (wampload, every thread) on CPU 1",
		restore: func() {
			_ = exec.Command(taskset, "-a", "-c", "-p", was, pid).Run()
		},
	}
}

// sideRun is what one run of a side measured.
type sideRun struct {
	res   rpcResult
	cpu   time.Duration   // the side's processes' utime+stime over the measured window
	parts []time.Duration // the same per process, in the order they started
	load  float64         // the load's (this process's) CPU over the window, in CPUs
}

// cpuPer100k is the router's CPU time per 100,000 answered calls.
func (r sideRun) cpuPer100k() float64 { return r.cpu.Seconds() * 100_000 / float64(r.res.calls) }

// runRPCSide starts the side's programs (after prefix, to pin them), runs
// one shape against them and stops them.
func runRPCSide(ctx context.Context, bins rpcBins, prefix []string, side rpcSide, shape rpcShape, duration, warmup time.Duration) (sideRun, error) {
	wamp := freePort()
	var ts []*target
	start := func(readyURL, bin string, args ...string) error {
		t, err := startProcess(ctx, prefix, readyURL, bin, args...)
		if err == nil {
			ts = append(ts, t)
		}
		return err
	}
	startRouter := func(args ...string) error {
		metrics := freePort()
		return start("http://"+metrics+"/metrics", bins.router, append([]string{"-wamp", wamp, "-log", freePort(),
			"-timeout", "5s", "-metrics", metrics}, args...)...)
	}
	var err error
	switch side {
	case sideStock:
		err = start("http://"+wamp+"/", bins.stock, "-wamp", wamp)
	case sideProxy:
		upstream := freePort()
		if err = start("http://"+upstream+"/", bins.stock, "-wamp", upstream); err == nil {
			err = startRouter("-upstream", "ws://"+upstream+"/")
		}
	default:
		err = startRouter("-observe=" + strconv.FormatBool(side == sideOn))
	}
	defer func() {
		for _, t := range ts {
			t.stop()
		}
	}()
	if err != nil {
		return sideRun{}, fmt.Errorf("%s: %w", side, err)
	}
	type mark struct {
		parts []time.Duration
		load  time.Duration
		at    time.Time
		err   error
	}
	var mu sync.Mutex
	var marks []mark
	res, err := rpcLoad(ctx, rpcConfig{url: "ws://" + wamp + "/", realm: "realm1", callers: shape.callers, window: shape.window,
		procedures: shape.procedures, payload: shape.payload, duration: duration, warmup: warmup,
		mark: func() {
			m := mark{at: time.Now()}
			for _, t := range ts {
				cpu, err := processCPU(t.cmd.Process.Pid)
				m.parts, m.err = append(m.parts, cpu), errors.Join(m.err, err)
			}
			load, err := processCPU(os.Getpid())
			m.load, m.err = load, errors.Join(m.err, err)
			mu.Lock()
			marks = append(marks, m)
			mu.Unlock()
		}})
	if err != nil {
		var stderr []string
		for _, t := range ts {
			stderr = append(stderr, t.stderr.String())
		}
		return sideRun{res: res}, fmt.Errorf("%s: %w (stderr: %s)", side, err, strings.Join(stderr, " | "))
	}
	if len(marks) != 2 {
		return sideRun{res: res}, fmt.Errorf("%s: the CPU was read %d times, not 2", side, len(marks))
	}
	if err := errors.Join(marks[0].err, marks[1].err); err != nil {
		return sideRun{res: res}, fmt.Errorf("%s: read the CPU: %w", side, err)
	}
	window := marks[1].at.Sub(marks[0].at)
	if window <= 0 {
		return sideRun{res: res}, fmt.Errorf("%s: the measured window is %v", side, window)
	}
	r := sideRun{res: res, load: (marks[1].load - marks[0].load).Seconds() / window.Seconds()}
	for i := range ts {
		part := marks[1].parts[i] - marks[0].parts[i]
		r.parts, r.cpu = append(r.parts, part), r.cpu+part
	}
	return r, nil
}

// clockTicks is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// processCPU is the process's user plus system CPU time so far, from
// /proc/<pid>/stat (fields 14 and 15).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("no ) in /proc/<pid>/stat")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

func benchRPC(ctx context.Context, bins rpcBins, shapes []rpcShape, duration time.Duration, rounds int) error {
	pin := pinRPC(ctx)
	defer pin.restore()
	warmup := benchWarmup
	fmt.Printf("### Stock nexus vs the router, observer off and on (RPC, JSON, one callee answering at once; "+
		"%d rounds of a stock, an off and an on run of %v each after %v of warm-up, the order rotating per round; "+
		"medians of the runs, and of each round's paired ratios)\n\n", rounds, duration, warmup)
	fmt.Printf("stock: cmd/stocknexus, nexus v3.3.0's own WebsocketServer (out-queue %d); off: cmd/router -observe=false; on: cmd/router. "+
		"A payload is one string argument each call sends and its answer echoes. CPU: the router process's utime+stime "+
		"over the measured window per 100,000 answered calls; load: the CPU the load generator used over the window, in CPUs "+
		"(near 1.00 with pinning, the load is the limit: calls/s then hardly tell the sides apart, and CPU per call does). %s.\n\n", router.DefaultOutQueueSize, pin.note)
	fmt.Println("| shape | calls/s stock · off · on | on ÷ stock | off ÷ stock | on ÷ off | p50 stock · off · on | " +
		"p99 stock · off · on | p99 on ÷ stock | p99 off ÷ stock | p999 stock · off · on | CPU s / 100k calls stock · off · on | CPU on ÷ stock | CPU on ÷ off | load stock · off · on | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, shape := range shapes {
		runs, errs, err := runRounds(ctx, bins, pin, rpcSides, shape, duration, warmup, rounds)
		if err != nil {
			return err
		}
		fmt.Println(rpcRow(shape, runs, errs))
	}
	fmt.Println()
	return nil
}

// benchWarmup is how long each run's load runs before it is measured.
const benchWarmup = 500 * time.Millisecond

// runRounds runs each of sides once per round against shape, the order
// rotating per round. runs holds one run per round and side, nil where it
// failed; errs the failed calls and runs by side.
func runRounds(ctx context.Context, bins rpcBins, pin pinning, sides []rpcSide, shape rpcShape, duration, warmup time.Duration, rounds int) (
	runs map[rpcSide][]*sideRun, errs map[rpcSide]map[string]int, err error,
) {
	runs, errs = map[rpcSide][]*sideRun{}, map[rpcSide]map[string]int{}
	for round := range rounds {
		for k := range sides {
			side := sides[(k+round)%len(sides)]
			r, err := runRPCSide(ctx, bins, pin.router, side, shape, duration, warmup)
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if errs[side] == nil {
				errs[side] = map[string]int{}
			}
			for uri, n := range r.res.errors {
				errs[side][uri] += n
			}
			if err != nil {
				errs[side]["run failed: "+err.Error()]++
				runs[side] = append(runs[side], nil)
				continue
			}
			runs[side] = append(runs[side], &r)
		}
	}
	return runs, errs, nil
}

// benchProxy measures what the proxy adds: the load against stock nexus
// directly, and against the router -upstream in front of it, both programs
// on the router's CPU.
func benchProxy(ctx context.Context, bins rpcBins, shapes []rpcShape, duration time.Duration, rounds int) error {
	pin := pinRPC(ctx)
	defer pin.restore()
	fmt.Printf("### The proxy: stock nexus directly vs through cmd/router -upstream (RPC, JSON, one callee answering at once; "+
		"%d rounds of a direct and a proxy run of %v each after %v of warm-up, the order rotating per round; "+
		"medians of the runs, and of each round's paired figures)\n\n", rounds, duration, benchWarmup)
	fmt.Printf("direct: the callers and the callee connect to cmd/stocknexus; proxy: they connect to cmd/router -upstream, "+
		"which relays each connection to the same cmd/stocknexus, observing. added: proxy − direct, paired per round. "+
		"CPU: utime+stime per 100,000 answered calls, of stock nexus (direct), and of stock nexus + the proxy (proxy); "+
		"CPU bound: direct's CPU ÷ proxy's, the calls/s ratio to expect when the router's CPU is the limit, "+
		"for one extra hop's CPU and nothing else. %s; with pinning, stock nexus and the proxy share CPU 0.\n\n", pin.note)
	fmt.Println("| shape | calls/s direct · proxy | proxy ÷ direct | CPU bound | p50 direct · proxy | p50 added | " +
		"p99 direct · proxy | p99 added | CPU s / 100k calls direct · proxy (nexus + proxy) | load direct · proxy | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	sides := []rpcSide{sideStock, sideProxy}
	for _, shape := range shapes {
		runs, errs, err := runRounds(ctx, bins, pin, sides, shape, duration, benchWarmup, rounds)
		if err != nil {
			return err
		}
		fmt.Println(proxyRow(shape, runs, errs))
	}
	fmt.Println()
	return nil
}

// proxyRow is the proxy table's row of one shape.
func proxyRow(shape rpcShape, runs map[rpcSide][]*sideRun, errs map[rpcSide]map[string]int) string {
	sides := []rpcSide{sideStock, sideProxy}
	rate := func(r *sideRun) float64 { return r.res.perSecond() }
	p50 := func(r *sideRun) float64 { return float64(r.res.p50) }
	p99 := func(r *sideRun) float64 { return float64(r.res.p99) }
	dur := func(x float64) string { return time.Duration(x).Round(time.Microsecond).String() }
	added := func(f func(*sideRun) float64) string {
		d := pairedMedian(runs, sideProxy, sideStock, func(rp, rd *sideRun) (float64, bool) { return f(rp) - f(rd), true }, "%.0f")
		if d == "—" {
			return d
		}
		ns, _ := strconv.ParseFloat(d, 64)
		return dur(ns)
	}
	cpuCell := sideCells(runs, []rpcSide{sideStock}, func(x float64) string { return fmt.Sprintf("%.2f", x) }, (*sideRun).cpuPer100k) + " · " +
		sideCells(runs, []rpcSide{sideProxy}, func(x float64) string { return fmt.Sprintf("%.2f", x) }, (*sideRun).cpuPer100k) + " (" +
		sideCells(runs, []rpcSide{sideProxy}, func(x float64) string { return fmt.Sprintf("%.2f", x) }, func(r *sideRun) float64 {
			return r.parts[0].Seconds() * 100_000 / float64(r.res.calls)
		}) + " + " +
		sideCells(runs, []rpcSide{sideProxy}, func(x float64) string { return fmt.Sprintf("%.2f", x) }, func(r *sideRun) float64 {
			return r.parts[1].Seconds() * 100_000 / float64(r.res.calls)
		}) + ")"
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", shape.label(),
		sideCells(runs, sides, func(x float64) string { return fmt.Sprintf("%.0f", x) }, rate),
		pairedMedian(runs, sideProxy, sideStock, func(rp, rd *sideRun) (float64, bool) { return rate(rp) / rate(rd), rate(rd) > 0 }, "%.3f"),
		pairedMedian(runs, sideStock, sideProxy, func(rd, rp *sideRun) (float64, bool) {
			return rd.cpuPer100k() / rp.cpuPer100k(), rp.cpuPer100k() > 0
		}, "%.3f"),
		sideCells(runs, sides, dur, p50), added(p50),
		sideCells(runs, sides, dur, p99), added(p99),
		cpuCell,
		sideCells(runs, sides, func(x float64) string { return fmt.Sprintf("%.2f", x) }, func(r *sideRun) float64 { return r.load }),
		errorCell(errs))
}

// rpcRow is the table row of one shape: medians over the runs that
// succeeded, and ratios of the runs of one round (back to back, so that
// their ratio cancels most of the machine's drift, which is larger than
// the effects measured).
func rpcRow(shape rpcShape, runs map[rpcSide][]*sideRun, errs map[rpcSide]map[string]int) string {
	ratio := func(a, b rpcSide, f func(*sideRun) float64) string {
		return pairedMedian(runs, a, b, func(ra, rb *sideRun) (float64, bool) { return f(ra) / f(rb), f(rb) > 0 }, "%.3f")
	}
	three := func(format func(float64) string, f func(*sideRun) float64) string {
		return sideCells(runs, rpcSides, format, f)
	}
	rate := func(r *sideRun) float64 { return r.res.perSecond() }
	p := func(q func(rpcResult) time.Duration) func(*sideRun) float64 {
		return func(r *sideRun) float64 { return float64(q(r.res)) }
	}
	p50 := p(func(r rpcResult) time.Duration { return r.p50 })
	p99 := p(func(r rpcResult) time.Duration { return r.p99 })
	p999 := p(func(r rpcResult) time.Duration { return r.p999 })
	dur := func(x float64) string { return time.Duration(x).Round(time.Microsecond).String() }
	count := func(x float64) string { return fmt.Sprintf("%.0f", x) }
	cpu := func(x float64) string { return fmt.Sprintf("%.2f", x) }
	load := func(r *sideRun) float64 { return r.load }
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", shape.label(),
		three(count, rate), ratio(sideOn, sideStock, rate), ratio(sideOff, sideStock, rate), ratio(sideOn, sideOff, rate),
		three(dur, p50), three(dur, p99), ratio(sideOn, sideStock, p99), ratio(sideOff, sideStock, p99), three(dur, p999),
		three(cpu, (*sideRun).cpuPer100k), ratio(sideOn, sideStock, (*sideRun).cpuPer100k), ratio(sideOn, sideOff, (*sideRun).cpuPer100k),
		three(cpu, load), errorCell(errs))
}

// pairedMedian is the median of f over the rounds where both a and b ran
// (f's false skips a round), formatted; "—" for none. Runs of one round
// are back to back, so that such a pairing cancels most of the machine's
// drift, which is larger than the effects measured.
func pairedMedian(runs map[rpcSide][]*sideRun, a, b rpcSide, f func(ra, rb *sideRun) (float64, bool), format string) string {
	var xs []float64
	for i := range min(len(runs[a]), len(runs[b])) {
		if ra, rb := runs[a][i], runs[b][i]; ra != nil && rb != nil {
			if x, ok := f(ra, rb); ok {
				xs = append(xs, x)
			}
		}
	}
	if len(xs) == 0 {
		return "—"
	}
	return fmt.Sprintf(format, median(xs))
}

// sideCells is the median of f over each side's runs, formatted, the sides
// apart by " · ".
func sideCells(runs map[rpcSide][]*sideRun, sides []rpcSide, format func(float64) string, f func(*sideRun) float64) string {
	var cells []string
	for _, side := range sides {
		var xs []float64
		for _, r := range runs[side] {
			if r != nil {
				xs = append(xs, f(r))
			}
		}
		if len(xs) > 0 {
			cells = append(cells, format(median(xs)))
		} else {
			cells = append(cells, "—")
		}
	}
	return strings.Join(cells, " · ")
}

// errorCell lists the failed calls (and runs) of each side by error URI.
func errorCell(errs map[rpcSide]map[string]int) string {
	var parts []string
	for _, side := range append(slices.Clone(rpcSides), sideProxy) {
		m := errs[side]
		if len(m) == 0 {
			continue
		}
		var each []string
		for _, uri := range slices.Sorted(maps.Keys(m)) {
			each = append(each, fmt.Sprintf("%s %d", strings.ReplaceAll(uri, "|", "/"), m[uri]))
		}
		parts = append(parts, string(side)+": "+strings.Join(each, ", "))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "; ")
}
