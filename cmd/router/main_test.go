package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	s, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.wampAddr != "127.0.0.1:9090" || s.metricsAddr != ":8080" || s.cfg.Realm != "realm1" ||
		s.cfg.CallTimeout != 300*time.Millisecond || s.cfg.OutQueueSize != 1024 || s.cfg.MaxProcedures != 1000 || s.cfg.Bare ||
		s.cfg.LogIdleTimeout != time.Minute {
		t.Errorf("defaults: %+v", s)
	}
}

// TestFlagDefaultsAreTheZeroConfig: with no flags, every field a flag sets
// holds the default that field takes when zero, the constant exported by
// the package that applies it. So the program without flags runs what
// app.Config{} means, and a flag whose default is written out anew fails
// here.
func TestFlagDefaultsAreTheZeroConfig(t *testing.T) {
	s, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		wampAddr: app.DefaultWAMPAddr, metricsAddr: app.DefaultMetricsAddr, logAddr: app.DefaultLogAddr,
		cfg: app.Config{
			Realm:                app.DefaultRealm,
			CallTimeout:          metrics.DefaultCallTimeout,
			MaxPending:           metrics.DefaultMaxPending,
			MaxPendingPerSession: metrics.DefaultMaxPendingPerSession,
			MaxProcedures:        metrics.DefaultMaxProcedures,
			MaxProcedureLen:      metrics.DefaultMaxProcedureLen,
			ProcedureIdle:        metrics.DefaultProcedureIdle,
			MaxLogLineLen:        wamplog.DefaultMaxLineLen,
			MaxLogConns:          wamplog.DefaultMaxConns,
			LogIdleTimeout:       wamplog.DefaultIdleTimeout,
			OutQueueSize:         router.DefaultOutQueueSize,
			OutQueueBytes:        router.DefaultOutQueueBytes,
			OutQueueBytesTotal:   router.DefaultOutQueueBytesTotal,
			WriteTimeout:         router.DefaultWriteTimeout,
			KeepAlive:            router.DefaultKeepAlive,
			MaxMessageSize:       router.DefaultMaxMessageSize,
			MaxConns:             router.DefaultMaxConns,
			MaxCallsInFlight:     router.DefaultMaxCallsInFlight,
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("defaults\n %+v, want\n %+v", s, want)
	}
}

// TestOffDurationFlags: for -keepalive and -log-idle-timeout, 0 or a
// negative duration is off, which a Config spells negative (its 0 is the
// default).
func TestOffDurationFlags(t *testing.T) {
	for _, v := range []string{"0", "0s", "-5s"} {
		s, err := parseFlags([]string{"-keepalive", v}, env(map[string]string{"WAMP_OBSERVER_LOG_IDLE_TIMEOUT": v}), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.KeepAlive >= 0 || s.cfg.LogIdleTimeout >= 0 {
			t.Errorf("%s: keepalive %v, log idle timeout %v; want both negative (off)", v, s.cfg.KeepAlive, s.cfg.LogIdleTimeout)
		}
	}
	s, err := parseFlags([]string{"-keepalive", "7s"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.KeepAlive != 7*time.Second {
		t.Errorf("keepalive %v, want 7s", s.cfg.KeepAlive)
	}
	if _, err := parseFlags([]string{"-keepalive", "soon"}, env(nil), io.Discard); err == nil {
		t.Error("bad keepalive accepted")
	}
}

func TestLogIdleTimeoutFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, map[string]string{"WAMP_OBSERVER_LOG_IDLE_TIMEOUT": "5s"}, 5 * time.Second},
		{[]string{"-log-idle-timeout", "250ms"}, map[string]string{"WAMP_OBSERVER_LOG_IDLE_TIMEOUT": "5s"}, 250 * time.Millisecond},
		{[]string{"-log-idle-timeout", "0"}, nil, -1}, // off
	} {
		s, err := parseFlags(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.LogIdleTimeout != tc.want {
			t.Errorf("%q %v: log idle timeout %v, want %v", tc.args, tc.env, s.cfg.LogIdleTimeout, tc.want)
		}
	}
}

func TestEnvironmentTwinsAndFlagPrecedence(t *testing.T) {
	s, err := parseFlags([]string{"-realm", "fromflag", "-allow-origin", "a.example", "-allow-origin", "b.example"}, env(map[string]string{
		"WAMP_OBSERVER_REALM":          "fromenv",
		"WAMP_OBSERVER_TIMEOUT":        "2s",
		"WAMP_OBSERVER_OUT_QUEUE":      "77",
		"WAMP_OBSERVER_MAX_PROCEDURES": "5",
		"WAMP_OBSERVER_WAMP":           "127.0.0.1:1",
		"WAMP_OBSERVER_OBSERVE":        "false",
		"WAMP_OBSERVER_ALLOW_ORIGIN":   "ignored.example", // the flag was given
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Realm != "fromflag" || s.cfg.CallTimeout != 2*time.Second || s.cfg.OutQueueSize != 77 ||
		s.cfg.MaxProcedures != 5 || s.wampAddr != "127.0.0.1:1" || !s.cfg.Bare {
		t.Errorf("parsed %+v", s)
	}
	if want := []string{"a.example", "b.example"}; !slices.Equal(s.cfg.AllowOrigins, want) {
		t.Errorf("origins %q, want %q", s.cfg.AllowOrigins, want)
	}

	s, err = parseFlags(nil, env(map[string]string{"WAMP_OBSERVER_ALLOW_ORIGIN": "x.example, *.y.example"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"x.example", "*.y.example"}; !slices.Equal(s.cfg.AllowOrigins, want) {
		t.Errorf("origins from env %q, want %q", s.cfg.AllowOrigins, want)
	}
}

func TestBadValuesAreReportedByName(t *testing.T) {
	_, err := parseFlags(nil, env(map[string]string{"WAMP_OBSERVER_TIMEOUT": "soon"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "WAMP_OBSERVER_TIMEOUT") {
		t.Errorf("bad env value: %v", err)
	}
	if _, err := parseFlags([]string{"-timeout", "soon"}, env(nil), io.Discard); err == nil {
		t.Error("bad flag value accepted")
	}
	if _, err := parseFlags([]string{"stray"}, env(nil), io.Discard); err == nil {
		t.Error("stray argument accepted")
	}
	// 0 would quietly mean the default; it is refused, as it always was.
	for _, args := range [][]string{{"-timeout", "0"}, {"-timeout", "-1s"}, {"-max-procedures", "0"}} {
		if _, err := parseFlags(args, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%q: %v, want it refused by name", args, err)
		}
	}
}

// TestProgramDrainsOnSIGTERM runs the built program with a session open
// and a call recorded, then stops it: new connections are refused, the
// session gets GOODBYE, the process exits 0 within 5 s, and the final
// counts are logged. So it does as a proxy in front of stock nexus, with
// a relayed client that does not read besides.
func TestProgramDrainsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := filepath.Join(t.TempDir(), "router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Run("embedded", func(t *testing.T) { drainsOnSIGTERM(t, bin) })
	t.Run("proxy", func(t *testing.T) { drainsOnSIGTERM(t, bin, "-upstream", harness.StartStockNexus(t).URL) })
}

func drainsOnSIGTERM(t *testing.T, bin string, args ...string) {
	cmd := exec.Command(bin, append([]string{"-wamp", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-log", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "WAMP_OBSERVER_TIMEOUT=1s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// One log line per endpoint, carrying the address actually bound.
	logLines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logLines <- sc.Text()
		}
		close(logLines)
	}()
	urls := map[string]string{}
	for len(urls) < 2 {
		line, ok := <-logLines
		if !ok {
			t.Fatal("the program exited during start-up")
		}
		for _, field := range strings.Fields(line) {
			if u, ok := strings.CutPrefix(field, "url="); ok {
				urls[strings.SplitN(u, ":", 2)[0]] = u
			}
		}
	}
	rsp, err := http.Get(urls["http"])
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", rsp.Status)
	}

	// A session that makes one call, to a procedure nobody registered.
	conn, err := wampraw.Join(context.Background(), urls["ws"], app.DefaultRealm, wampraw.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Send(5*time.Second, 48, 1, map[string]any{}, "nobody.registered"); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.Read(5 * time.Second); err != nil || len(got) < 3 || string(got[0]) != "8" || string(got[1]) != "48" || string(got[2]) != "1" {
		t.Fatalf("CALL answered with %s, %v", got, err)
	}

	// A client that joins and then reads nothing (with a small receive
	// buffer, so that what it is sent stays in the program).
	stuck, err := wampraw.Join(context.Background(), urls["ws"], app.DefaultRealm, wampraw.Options{RecvBuf: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()

	// Clients that connected and sent nothing, or half a request, on
	// both ports: net/http counts them busy for 5 s, which must not hold
	// up the exit.
	for _, u := range []string{urls["ws"], urls["http"]} {
		addr := strings.TrimPrefix(strings.TrimPrefix(u, "ws://"), "http://")
		addr, _, _ = strings.Cut(addr, "/")
		for i := range 10 {
			idle, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			if i%2 == 1 {
				fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: %s\r\n", addr)
			}
		}
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.Read(5 * time.Second); err != nil || string(got[0]) != "6" {
		t.Fatalf("got %s, %v; want GOODBYE", got, err)
	}
	_ = conn.Send(time.Second, 6, map[string]any{}, "wamp.close.goodbye_and_out")

	var final []string
	for line := range logLines { // until the program has exited
		if strings.Contains(line, `msg="final counts"`) {
			final = append(final, line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGTERM", took)
	if took > 5*time.Second {
		t.Errorf("took %v to exit", took)
	}
	if c, _, err := wampraw.Dial(context.Background(), urls["ws"], wampraw.Options{Timeout: time.Second}); err == nil {
		c.Close()
		t.Error("a new connection was accepted after shutdown")
	}
	// The caller side counts the call; the callee side has nothing, as
	// no callee got it.
	want := []string{"family=wamp_router errors=1 responses=0 timeouts=0", "family=wamp_router_callee errors=0 responses=0 timeouts=0"}
	if len(final) != len(want) {
		t.Fatalf("final counts %q, want lines with %q", final, want)
	}
	for i, w := range want {
		if !strings.Contains(final[i], w) {
			t.Errorf("final counts %q, want %q", final[i], w)
		}
	}
}

func TestFrontFlagsHaveDefaultsAndEnvironmentTwins(t *testing.T) {
	s, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.OutQueueBytes != router.DefaultOutQueueBytes || c.WriteTimeout != router.DefaultWriteTimeout ||
		c.KeepAlive != router.DefaultKeepAlive || c.MaxConns != router.DefaultMaxConns ||
		c.MaxCallsInFlight != router.DefaultMaxCallsInFlight || len(c.AllowHosts) != 0 {
		t.Errorf("defaults: %+v", c)
	}
	s, err = parseFlags([]string{"-max-conns", "7"}, env(map[string]string{
		"WAMP_OBSERVER_OUT_QUEUE_BYTES":     "1000",
		"WAMP_OBSERVER_WRITE_TIMEOUT":       "3s",
		"WAMP_OBSERVER_KEEPALIVE":           "5s",
		"WAMP_OBSERVER_MAX_CONNS":           "99", // the flag was given
		"WAMP_OBSERVER_MAX_CALLS_IN_FLIGHT": "12",
		"WAMP_OBSERVER_ALLOW_HOST":          "router.internal:*, *.lan",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c = s.cfg
	if c.OutQueueBytes != 1000 || c.WriteTimeout != 3*time.Second || c.KeepAlive != 5*time.Second ||
		c.MaxConns != 7 || c.MaxCallsInFlight != 12 || !slices.Equal(c.AllowHosts, []string{"router.internal:*", "*.lan"}) {
		t.Errorf("parsed %+v", c)
	}
}

// TestREADMEListsEveryFlagWithItsDefault keeps the README's flag table true:
// every flag -h documents has a row, with the default -h shows, and the
// table names no flag the program lacks.
func TestREADMEListsEveryFlagWithItsDefault(t *testing.T) {
	var usage strings.Builder
	if _, err := parseFlags([]string{"-h"}, env(nil), &usage); err == nil {
		t.Fatal("-h did not stop the program")
	}
	documented := harness.FlagDefaults(t, usage.String()) // flag: its default, "" for none

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `-([a-z-]+)[^`]*` \\| ([^|]*) \\|")
	listed := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		listed[m[1]] = strings.Trim(strings.TrimSpace(m[2]), "`")
	}
	delete(listed, "h")
	for name, def := range documented {
		got, ok := listed[name]
		switch {
		case !ok:
			t.Errorf("-%s is not in the README's flag table", name)
		case !harness.SameDefault(def, got):
			t.Errorf("-%s: the README says its default is %q, -h says %q", name, got, def)
		}
	}
	for name := range listed {
		if _, ok := documented[name]; !ok {
			t.Errorf("the README's flag table lists -%s, which the program does not have", name)
		}
	}
}
