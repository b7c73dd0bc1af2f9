package observer_test

import (
	"bufio"
	"context"
	"math"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// process is a program run by the test (a PHP script, a Node script); it
// is stopped when the test ends, whatever happens.
type process struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	lines  chan string   // stdout, line by line
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited
}

func startPHP(t *testing.T, env []string, script string, args ...string) *process {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal("php not found: ./test.sh installs php-cli")
	}
	return startProcess(t, env, php, append([]string{script}, args...)...)
}

func startProcess(t *testing.T, env []string, exe string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := strings.Join(args, " ")
	p := &process{t: t, name: name, cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.lines {
		}
		<-p.exited
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	})
	return p
}

// waitLine waits for a stdout line starting with prefix.
func (p *process) waitLine(prefix string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s exited before printing %q", p.name, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-deadline:
			p.t.Fatalf("%s did not print %q within %v", p.name, prefix, timeout)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit and its summary line.
func (p *process) stop(summaryPrefix string) string {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	summary := p.waitLine(summaryPrefix, 5*time.Second)
	p.exitsCleanly()
	return summary
}

// exitsCleanly waits for p, which has printed its last line, to exit 0.
func (p *process) exitsCleanly() {
	p.t.Helper()
	go func() { // anything printed after the last line must not block the exit
		for range p.lines {
		}
	}()
	select {
	case <-p.exited:
		if p.err != nil {
			p.t.Errorf("%s exited with %v", p.name, p.err)
		}
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s still running 10s after its last line", p.name)
	}
}

// startInstanceWithLog is startInstance with the log listener on a free
// loopback port; it returns the address PHP should log to.
func startInstanceWithLog(t *testing.T, cfg app.Config) (*instance, string) {
	t.Helper()
	socks, err := wamplog.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startInstanceOn(t, cfg, socks), socks.Addr().String()
}

func (s scrapeResult) count(family, message string) uint64 {
	c, _, _ := s.summary(family, message)
	return c
}

func (s scrapeResult) total(family string) uint64 {
	var n uint64
	for _, m := range s[family].GetMetric() {
		n += m.GetSummary().GetSampleCount()
	}
	return n
}

var hellos = []string{"hello1", "hello2", "hello3", "hello4", "hello5", "hello6", "hello7", "hello8", "hello9"}

// TestRouterCallerAndCalleeAgree runs the original setup — the router, one
// PHP callee and several PHP writers — and checks that the router, the
// callers' logs and the callee's log count the same calls.
func TestRouterCallerAndCalleeAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP processes for several seconds")
	}
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: 300 * time.Millisecond})
	env := []string{"WAMP_URL=" + in.wampURL, "WAMP_REALM=realm1", "WAMP_OBSERVER_ADDR=" + logAddr}

	callee := startPHP(t, env, "php/callee.php")
	callee.waitLine("callee: registered", 10*time.Second)

	var writers []*process
	for range 8 {
		writers = append(writers, startPHP(t, env, "php/writer.php"))
	}
	// Run until every procedure has been called and every outcome seen,
	// at least 3 seconds; errors are 1 in 99 answered calls.
	start := time.Now()
	waitForCond(t, 60*time.Second, "every procedure and every outcome", func() bool {
		s := scrapeResult(in.scrape(t, "/metrics"))
		for _, h := range hellos {
			if s.count("wamp_router_responses_seconds", h) == 0 {
				return false
			}
		}
		return time.Since(start) > 3*time.Second &&
			s.total("wamp_router_errors_seconds") > 0 && s.total("wamp_router_timeouts_seconds") > 0
	})
	for _, w := range writers {
		t.Log(w.stop("writer:"))
	}

	// Every call has ended: answered, or past its deadline everywhere.
	var got scrapeResult
	waitForCond(t, 10*time.Second, "no calls pending", func() bool {
		got = in.scrape(t, "/metrics")
		return got.gauge("wamp_router_calls_in_flight") == 0 && got.gauge("wamp_observer_log_calls_pending") == 0
	})

	bad := 0.0
	for _, m := range got["wamp_observer_log_bad_lines_total"].GetMetric() {
		bad += m.GetCounter().GetValue()
	}
	if bad != 0 {
		t.Errorf("%v bad log lines", bad)
	}
	var calls uint64
	for _, h := range hellos {
		for _, o := range outcomes {
			router := got.count("wamp_router_"+o+"_seconds", h)
			caller := got.count("wamp_out_"+o+"_seconds", h)
			calls += router
			if router != caller {
				t.Errorf("%s %s: router %d, caller's log %d", h, o, router, caller)
			}
			if o == "timeouts" {
				continue // the callee's view of a timeout is its own deadline
			}
			if calleeCount := got.count("wamp_in_"+o+"_seconds", h); router != calleeCount {
				t.Errorf("%s %s: router %d, callee's log %d", h, o, router, calleeCount)
			}
		}
	}
	t.Logf("%d calls, %d responses, %d errors, %d timeouts", calls, got.total("wamp_router_responses_seconds"),
		got.total("wamp_router_errors_seconds"), got.total("wamp_router_timeouts_seconds"))
	t.Log(callee.stop("callee:"))
}

// TestUDPWriterKeepsTheSeedsProportions runs the original synthetic writer
// over UDP, with no router involved, and checks the proportions of its
// outcomes against its distribution.
func TestUDPWriterKeepsTheSeedsProportions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PHP processes for several seconds")
	}
	in, logAddr := startInstanceWithLog(t, app.Config{CallTimeout: 300 * time.Millisecond})
	env := []string{"WAMP_OBSERVER_ADDR=" + logAddr}
	var writers []*process
	for range 6 {
		writers = append(writers, startPHP(t, env, "php/writer.php", "--udp"))
	}
	waitForCond(t, 60*time.Second, "1200 calls", func() bool {
		s := scrapeResult(in.scrape(t, "/metrics"))
		return s.total("wamp_in_responses_seconds")+s.total("wamp_in_errors_seconds")+s.total("wamp_in_timeouts_seconds") >= 1200
	})
	for _, w := range writers {
		t.Log(w.stop("writer --udp:"))
	}
	var got scrapeResult
	waitForCond(t, 10*time.Second, "no calls pending", func() bool {
		got = in.scrape(t, "/metrics")
		return got.gauge("wamp_observer_log_calls_pending") == 0
	})
	responses := float64(got.total("wamp_in_responses_seconds"))
	errs := float64(got.total("wamp_in_errors_seconds"))
	timeouts := float64(got.total("wamp_in_timeouts_seconds"))
	n := responses + errs + timeouts
	// The seed: 1 in 9 delayed past the deadline, independently 1 in 9
	// never answered, 1 in 99 of the answered ones an error.
	want := map[string]float64{
		"timeouts":  1.0/9 + 8.0/9*1.0/9,
		"errors":    8.0 / 9 * 8.0 / 9 * 1.0 / 99,
		"responses": 8.0 / 9 * 8.0 / 9 * 98.0 / 99,
	}
	for name, count := range map[string]float64{"responses": responses, "errors": errs, "timeouts": timeouts} {
		p := want[name]
		sd := math.Sqrt(p * (1 - p) / n)
		// Five standard deviations: a false alarm about once in 1.7 million runs.
		if got := count / n; math.Abs(got-p) > 5*sd {
			t.Errorf("%s: %.4f of %v calls, want %.4f ± %.4f", name, got, n, p, 5*sd)
		}
	}
	for _, h := range hellos {
		if got.count("wamp_in_responses_seconds", h) == 0 {
			t.Errorf("%s: no responses", h)
		}
	}
	// The responses' latency is the seed's 5–10 ms.
	if h := got.histogram("wamp_in_responses_total_seconds"); h != nil {
		if mean := h.GetSampleSum() / float64(h.GetSampleCount()); mean < 0.004 || mean > 0.05 {
			t.Errorf("mean response latency %.4fs, want about 0.0075s", mean)
		}
	}
	t.Logf("%v calls: %v responses, %v errors, %v timeouts", n, responses, errs, timeouts)
}

func waitForCond(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
