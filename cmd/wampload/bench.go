package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/freeport"
)

// runBench measures both paths against their references in one run,
// alternating the sides so that machine drift hits both alike, and prints
// markdown tables for the README.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wampload bench", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "measured duration of each RPC run")
	rounds := fs.Int("rounds", 5, "runs of each side, alternating")
	only := fs.String("only", "rpc,proxy,log,php,micro", "sections to run")
	shapes := fs.String("shapes", "", "RPC shapes to run, comma-separated (e.g. 16x1,16x1-10KiB); empty: all of "+strings.Join(rpcShapeNames(), ","))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *rounds < 1 {
		return fmt.Errorf("-duration must be positive and -rounds at least 1, got %v and %d", *duration, *rounds)
	}
	dir, err := os.MkdirTemp("", "wampload-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	routerBin := filepath.Join(dir, "router")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", routerBin, "./cmd/router").CombinedOutput(); err != nil {
		return fmt.Errorf("build the router (run from the repository root): %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	fmt.Printf("## Benchmarks: %s, %d cores, %s, %s\n\n", time.Now().Format("2006-01-02"), runtime.NumCPU(), cpuModel(), host)
	for _, section := range []struct {
		name string
		run  func(context.Context, rpcBins, []rpcShape, time.Duration, int) error
	}{{"rpc", benchRPC}, {"proxy", benchProxy}} {
		if !slices.Contains(strings.Split(*only, ","), section.name) {
			continue
		}
		selected, err := selectRPCShapes(*shapes)
		if err != nil {
			return err
		}
		stockBin := filepath.Join(dir, "stocknexus")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", stockBin, "./cmd/stocknexus").CombinedOutput(); err != nil {
			return fmt.Errorf("build stocknexus (run from the repository root): %v\n%s", err, out)
		}
		if err := section.run(ctx, rpcBins{router: routerBin, stock: stockBin}, selected, *duration, *rounds); err != nil {
			return err
		}
	}
	if strings.Contains(*only, "log") {
		if err := benchLog(ctx, routerBin, self, *rounds); err != nil {
			return err
		}
	}
	if strings.Contains(*only, "php") {
		if err := benchPHP(ctx, *rounds); err != nil {
			return err
		}
	}
	if strings.Contains(*only, "micro") {
		return benchMicro(ctx)
	}
	return nil
}

// target is a process under load: the router or the bare sink.
type target struct {
	cmd        *exec.Cmd
	metricsURL string
	wampURL    string
	logAddr    string
	stderr     *tailBuffer   // the last few KiB it wrote to stderr
	exited     chan struct{} // closed once it has exited; then waitErr is set
	waitErr    error
}

// freePort is a loopback address for a router or sink to listen on.
func freePort() string {
	addr, err := freeport.Addr()
	if err != nil {
		panic(err)
	}
	return addr
}

// startTarget starts a program that serves metrics, on a free address it
// is given with -metrics, and waits until they answer.
func startTarget(ctx context.Context, name string, args ...string) (*target, error) {
	metrics := freePort()
	t, err := startProcess(ctx, nil, "http://"+metrics+"/metrics", name, append(args, "-metrics", metrics)...)
	if t != nil {
		t.metricsURL = "http://" + metrics + "/metrics"
	}
	return t, err
}

// startProcess starts name with args, after the prefix (taskset, to pin
// it) when there is one, and waits until readyURL answers HTTP.
func startProcess(ctx context.Context, prefix []string, readyURL, name string, args ...string) (*target, error) {
	t := &target{}
	argv := append(append(slices.Clone(prefix), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	t.stderr = &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = io.Discard, t.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t.cmd = cmd
	t.exited = make(chan struct{})
	go func() { t.waitErr = cmd.Wait(); close(t.exited) }()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if rsp, err := http.Get(readyURL); err == nil {
			rsp.Body.Close()
			return t, nil
		}
		if t.died() || time.Since(start) > 10*time.Second {
			t.stop()
			return nil, fmt.Errorf("%s did not start", name)
		}
	}
}

func startRouter(ctx context.Context, bin string, observe bool) (*target, error) {
	wamp, logAddr := freePort(), freePort()
	t, err := startTarget(ctx, bin, "-wamp", wamp, "-log", logAddr, "-observe="+strconv.FormatBool(observe), "-timeout", "5s")
	if err != nil {
		return nil, err
	}
	t.wampURL, t.logAddr = "ws://"+wamp+"/", logAddr
	return t, nil
}

func startSink(ctx context.Context, self, transport string) (*target, error) {
	addr := freePort()
	t, err := startTarget(ctx, self, "sink", "-addr", addr, "-transport", transport)
	if err != nil {
		return nil, err
	}
	t.logAddr = addr
	return t, nil
}

// peakRSS is the process's high-water resident set, in MiB.
func (t *target) peakRSS() float64 { return t.statusMiB("VmHWM") }

// statusMiB reads a kB field of /proc/<pid>/status, in MiB; 0 once the
// process is gone.
func (t *target) statusMiB(field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", t.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// died tells whether the process has exited.
func (t *target) died() bool {
	select {
	case <-t.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the exit, killing the process after 10s.
// It returns how long the exit took and whether it came without the kill.
func (t *target) stop() (took time.Duration, exited bool) {
	start := time.Now()
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
		return time.Since(start), true
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
		return time.Since(start), false
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchLog(ctx context.Context, routerBin, self string, rounds int) error {
	fmt.Println("### Log path: the router's listener vs a bare sink on the same socket type")
	fmt.Println()
	fmt.Println("TCP: senders send as fast as they can. UDP: at a fixed offered rate, one line per datagram.")
	fmt.Println()
	fmt.Println("| transport | K | offered lines/s | router lines/s | router lost | router peak RSS MiB | sink lines/s | sink lost | router ÷ sink |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	type run struct{ lines, lost, rss float64 }
	measure := func(transport string, k int, rate float64, total int, router bool) (run, error) {
		var t *target
		var err error
		if router {
			t, err = startRouter(ctx, routerBin, true)
		} else {
			t, err = startSink(ctx, self, transport)
		}
		if err != nil {
			return run{}, err
		}
		defer t.stop()
		res, err := logLoad(ctx, logConfig{addr: t.logAddr, transport: transport, senders: k,
			pairs: max(1, total/2/k), rate: rate, metricsURL: t.metricsURL})
		if err != nil {
			return run{}, err
		}
		return run{lines: res.linesPerSecond(), lost: float64(res.lost()) / float64(res.sent), rss: t.peakRSS()}, nil
	}
	for _, c := range []struct {
		transport string
		rates     []float64
		total     int
	}{
		{"tcp", []float64{0}, 2_000_000},
		{"udp", []float64{100_000, 200_000, 400_000}, 0},
	} {
		for _, k := range []int{1, 8, 100} {
			for _, rate := range c.rates {
				total := c.total
				if rate > 0 {
					total = int(rate * 2) // two seconds of offered load
				}
				var routerRuns, sinkRuns []run
				for round := range rounds {
					for _, router := range [][]bool{{true, false}, {false, true}}[round%2] {
						r, err := measure(c.transport, k, rate, total, router)
						if err != nil {
							return err
						}
						if router {
							routerRuns = append(routerRuns, r)
						} else {
							sinkRuns = append(sinkRuns, r)
						}
					}
				}
				pick := func(rs []run, f func(run) float64) float64 {
					var xs []float64
					for _, r := range rs {
						xs = append(xs, f(r))
					}
					return median(xs)
				}
				rl, rLost := pick(routerRuns, func(r run) float64 { return r.lines }), pick(routerRuns, func(r run) float64 { return r.lost })
				sl, sLost := pick(sinkRuns, func(r run) float64 { return r.lines }), pick(sinkRuns, func(r run) float64 { return r.lost })
				offered := "max"
				if rate > 0 {
					offered = fmt.Sprintf("%.0f", rate)
				}
				fmt.Printf("| %s | %d | %s | %.0f | %.3f%% | %.0f | %.0f | %.3f%% | %.2f |\n", c.transport, k, offered,
					rl, 100*rLost, pick(routerRuns, func(r run) float64 { return r.rss }), sl, 100*sLost, rl/sl)
			}
		}
	}
	fmt.Println()
	return nil
}

func benchMicro(ctx context.Context) error {
	fmt.Println("### Hot paths (go test -bench)")
	fmt.Println()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "ObserveCallResult|BurstWrites|ParseLine|HandleLinePair",
		"-benchmem", "-count", "3", "./router", "./wamplog")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	type row struct {
		ns            []float64
		bytes, allocs string
	}
	var order []string
	rows := map[string]*row{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		var ns, bytes, allocs string
		for i := 1; i+1 < len(f); i++ {
			switch f[i+1] {
			case "ns/op":
				ns = f[i]
			case "B/op":
				bytes = f[i]
			case "allocs/op":
				allocs = f[i]
			}
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if rows[name] == nil {
			rows[name] = &row{}
			order = append(order, name)
		}
		v, _ := strconv.ParseFloat(ns, 64)
		rows[name].ns = append(rows[name].ns, v)
		rows[name].bytes, rows[name].allocs = bytes, allocs
	}
	fmt.Println("| benchmark (3 runs) | ns/op | B/op | allocs/op |")
	fmt.Println("|---|---|---|---|")
	for _, name := range order {
		r := rows[name]
		fmt.Printf("| %s | %.0f–%.0f | %s | %s |\n", name, slices.Min(r.ns), slices.Max(r.ns), r.bytes, r.allocs)
	}
	fmt.Println()
	return nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
