package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
		s.cfg.Timeout != 300*time.Millisecond || s.cfg.OutQueue != 1024 || s.cfg.MaxProcedures != 1000 || !s.cfg.Observe {
		t.Errorf("defaults: %+v", s)
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
	if s.cfg.Realm != "fromflag" || s.cfg.Timeout != 2*time.Second || s.cfg.OutQueue != 77 ||
		s.cfg.MaxProcedures != 5 || s.wampAddr != "127.0.0.1:1" || s.cfg.Observe {
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
}

// TestProgramServesAndExitsCleanlyOnSIGTERM runs the built program.
func TestProgramServesAndExitsCleanlyOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	bin := filepath.Join(t.TempDir(), "router")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-wamp", "127.0.0.1:0", "-metrics", "127.0.0.1:0", "-log", "127.0.0.1:0")
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
	urls := map[string]string{}
	lines := bufio.NewScanner(stderr)
	for len(urls) < 2 && lines.Scan() {
		for _, field := range strings.Fields(lines.Text()) {
			if u, ok := strings.CutPrefix(field, "url="); ok {
				urls[strings.SplitN(u, ":", 2)[0]] = u
			}
		}
	}
	if urls["ws"] == "" || urls["http"] == "" {
		t.Fatalf("start-up lines did not name both endpoints: %v", urls)
	}
	rsp, err := http.Get(urls["http"])
	if err != nil {
		t.Fatal(err)
	}
	rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", rsp.Status)
	}

	go io.Copy(io.Discard, stderr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after SIGTERM")
	}
}
