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
	res  rpcResult
	cpu  time.Duration // the router process's utime+stime over the measured window
	load float64       // the load's (this process's) CPU over the window, in CPUs
}

// cpuPer100k is the router's CPU time per 100,000 answered calls.
func (r sideRun) cpuPer100k() float64 { return r.cpu.Seconds() * 100_000 / float64(r.res.calls) }

// runRPCSide starts the side's program (after prefix, to pin it), runs one
// shape against it and stops it.
func runRPCSide(ctx context.Context, bins rpcBins, prefix []string, side rpcSide, shape rpcShape, duration, warmup time.Duration) (sideRun, error) {
	wamp := freePort()
	var t *target
	var err error
	switch side {
	case sideStock:
		t, err = startProcess(ctx, prefix, "http://"+wamp+"/", bins.stock, "-wamp", wamp)
	default:
		metrics := freePort()
		t, err = startProcess(ctx, prefix, "http://"+metrics+"/metrics", bins.router, "-wamp", wamp, "-log", freePort(),
			"-observe="+strconv.FormatBool(side == sideOn), "-timeout", "5s", "-metrics", metrics)
	}
	if err != nil {
		return sideRun{}, fmt.Errorf("%s: %w", side, err)
	}
	defer t.stop()
	type mark struct {
		router, load time.Duration
		at           time.Time
		err          error
	}
	var mu sync.Mutex
	var marks []mark
	pid := t.cmd.Process.Pid
	res, err := rpcLoad(ctx, rpcConfig{url: "ws://" + wamp + "/", realm: "realm1", callers: shape.callers, window: shape.window,
		procedures: shape.procedures, payload: shape.payload, duration: duration, warmup: warmup,
		mark: func() {
			router, err1 := processCPU(pid)
			load, err2 := processCPU(os.Getpid())
			mu.Lock()
			marks = append(marks, mark{router, load, time.Now(), errors.Join(err1, err2)})
			mu.Unlock()
		}})
	if err != nil {
		return sideRun{res: res}, fmt.Errorf("%s: %w (stderr: %s)", side, err, t.stderr)
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
	return sideRun{res: res, cpu: marks[1].router - marks[0].router,
		load: (marks[1].load - marks[0].load).Seconds() / window.Seconds()}, nil
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
	const warmup = 500 * time.Millisecond
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
		runs := map[rpcSide][]*sideRun{} // one per round; nil where the run failed
		errs := map[rpcSide]map[string]int{}
		for round := range rounds {
			for k := range rpcSides {
				side := rpcSides[(k+round)%len(rpcSides)]
				r, err := runRPCSide(ctx, bins, pin.router, side, shape, duration, warmup)
				if ctx.Err() != nil {
					return ctx.Err()
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
		fmt.Println(rpcRow(shape, runs, errs))
	}
	fmt.Println()
	return nil
}

// rpcRow is the table row of one shape: medians over the runs that
// succeeded, and ratios of the runs of one round (back to back, so that
// their ratio cancels most of the machine's drift, which is larger than
// the effects measured).
func rpcRow(shape rpcShape, runs map[rpcSide][]*sideRun, errs map[rpcSide]map[string]int) string {
	of := func(side rpcSide, f func(*sideRun) float64) []float64 {
		var xs []float64
		for _, r := range runs[side] {
			if r != nil {
				xs = append(xs, f(r))
			}
		}
		return xs
	}
	ratio := func(a, b rpcSide, f func(*sideRun) float64) string {
		var xs []float64
		for i := range min(len(runs[a]), len(runs[b])) {
			if ra, rb := runs[a][i], runs[b][i]; ra != nil && rb != nil && f(rb) > 0 {
				xs = append(xs, f(ra)/f(rb))
			}
		}
		if len(xs) == 0 {
			return "—"
		}
		return fmt.Sprintf("%.3f", median(xs))
	}
	three := func(format func(float64) string, f func(*sideRun) float64) string {
		var cells []string
		for _, side := range rpcSides {
			if xs := of(side, f); len(xs) > 0 {
				cells = append(cells, format(median(xs)))
			} else {
				cells = append(cells, "—")
			}
		}
		return strings.Join(cells, " · ")
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

// errorCell lists the failed calls (and runs) of each side by error URI.
func errorCell(errs map[rpcSide]map[string]int) string {
	var parts []string
	for _, side := range rpcSides {
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
