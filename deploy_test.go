package observer_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// The systemd files shipped in deploy/systemd.
const (
	shippedUnit    = "deploy/systemd/php-wamp-observer.service"
	shippedEnvFile = "deploy/systemd/php-wamp-observer.env"
	unitExecStart  = "/usr/local/bin/php-wamp-observer"
)

// TestSystemdService checks the shipped unit and its example environment
// file against the router they start: systemd-analyze accepts the unit
// without a warning, its hardening keeps a low exposure score, its file
// limit covers the connection bounds, the example file names every flag
// with its default, and the router started with those settings stops on
// SIGTERM well within the unit's stop timeout.
func TestSystemdService(t *testing.T) {
	analyze := harness.RequireTool(t, "systemd-analyze")
	dir := t.TempDir()
	binary := filepath.Join(dir, "php-wamp-observer")
	if out, err := exec.Command("go", "build", "-o", binary, "./cmd/router").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/router: %v\n%s", err, out)
	}
	unitText, err := os.ReadFile(shippedUnit)
	if err != nil {
		t.Fatal(err)
	}
	unit := harness.ParseUnit(t, shippedUnit, string(unitText))
	usage, err := exec.Command(binary, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -h: %v\n%s", binary, err, usage)
	}
	flags := harness.FlagDefaults(t, string(usage))

	t.Run("systemd-analyze verify passes without a warning", func(t *testing.T) {
		if got := unit["ExecStart"]; len(got) != 1 || got[0] != unitExecStart {
			t.Fatalf("ExecStart = %q, want exactly %q", got, unitExecStart)
		}
		// verify checks that ExecStart is an executable: point a copy at
		// the binary just built, under the same unit name.
		copyText := strings.Replace(string(unitText), "ExecStart="+unitExecStart, "ExecStart="+binary, 1)
		copyPath := filepath.Join(dir, filepath.Base(shippedUnit))
		if err := os.WriteFile(copyPath, []byte(copyText), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("hardening keeps the exposure score low", func(t *testing.T) {
		out, err := exec.Command(analyze, "security", "--offline=true", shippedUnit).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-analyze security: %v\n%s", err, out)
		}
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		// 1.6 when written; systemd calls up to 2.0 "OK", 10 "UNSAFE".
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
			t.Errorf("exposure level %v, want at most 2.0:\n%s", level, out)
		}
		for _, key := range []string{"DynamicUser", "NoNewPrivileges", "ProtectSystem", "PrivateTmp"} {
			if len(unit[key]) == 0 {
				t.Errorf("%s not set", key)
			}
		}
	})

	t.Run("LimitNOFILE covers max-conns and max-log-conns", func(t *testing.T) {
		limit, err := strconv.Atoi(unit.Last("LimitNOFILE"))
		if err != nil {
			t.Fatalf("LimitNOFILE = %q: %v", unit["LimitNOFILE"], err)
		}
		conns, _ := strconv.Atoi(flags["max-conns"])
		logConns, _ := strconv.Atoi(flags["max-log-conns"])
		if conns == 0 || logConns == 0 {
			t.Fatalf("defaults of -max-conns and -max-log-conns not found: %q", flags)
		}
		// Headroom for listeners, metrics connections and the runtime.
		if want := conns + logConns + 256; limit < want {
			t.Errorf("LimitNOFILE=%d, want at least %d (-max-conns %d + -max-log-conns %d + 256)", limit, want, conns, logConns)
		}
		if got := unit["Restart"]; unit.Last("Restart") != "on-failure" {
			t.Errorf("Restart = %q, want on-failure", got)
		}
		if got := unit["EnvironmentFile"]; len(got) != 1 || got[0] != "-/etc/default/php-wamp-observer" {
			t.Errorf("EnvironmentFile = %q", got)
		}
	})

	env := harness.ParseEnvFile(t, shippedEnvFile)
	t.Run("the example environment file names every flag with its default", func(t *testing.T) {
		for name := range flags {
			if _, ok := env[app.EnvName(name)]; !ok {
				t.Errorf("-%s: no %s line", name, app.EnvName(name))
			}
		}
		for key, setting := range env {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(key, "WAMP_OBSERVER_"), "_", "-"))
			def, ok := flags[name]
			switch {
			case !ok:
				t.Errorf("line %d: %s is no flag's environment twin", setting.Line, key)
			case name == "auth-file": // an example path, not the default
			case !harness.SameDefault(def, setting.Value):
				t.Errorf("line %d: %s=%s, but the default of -%s is %q", setting.Line, key, setting.Value, name, def)
			}
		}
	})

	t.Run("the router runs with the example settings and stops on SIGTERM in time", func(t *testing.T) {
		cmd := exec.Command(binary)
		cmd.Env = os.Environ()
		for key, setting := range env {
			if key != "WAMP_OBSERVER_AUTH_FILE" {
				cmd.Env = append(cmd.Env, key+"="+setting.Value)
			}
		}
		// Free ports rather than the defaults, which other tests or a
		// running service may hold.
		metricsAddr := harness.FreeAddr(t)
		cmd.Env = append(cmd.Env, "WAMP_OBSERVER_WAMP="+harness.FreeAddr(t), "WAMP_OBSERVER_METRICS="+metricsAddr,
			"WAMP_OBSERVER_LOG="+harness.FreeAddr(t))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("router stderr:\n%s", stderr.String())
			}
		})
		testkit.Eventually(t, 10*time.Second, "the metrics endpoint", func() (any, bool) {
			rsp, err := http.Get("http://" + metricsAddr + "/metrics")
			if err != nil {
				return err, false
			}
			rsp.Body.Close()
			return rsp.Status, rsp.StatusCode == http.StatusOK
		})
		stopTimeout, err := time.ParseDuration(unit.Last("TimeoutStopSec"))
		if err != nil {
			t.Fatalf("TimeoutStopSec = %q: %v", unit["TimeoutStopSec"], err)
		}
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			if err != nil {
				t.Fatalf("router exited with %v after SIGTERM", err)
			}
			// Half the unit's timeout at most, so a slow machine does not
			// end in SIGKILL.
			if took := time.Since(start); took > stopTimeout/2 {
				t.Errorf("stopped in %v, more than half of TimeoutStopSec=%v", took, stopTimeout)
			}
		case <-time.After(stopTimeout):
			t.Fatalf("still running %v (TimeoutStopSec) after SIGTERM", stopTimeout)
		}
	})
}
