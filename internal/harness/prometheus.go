package harness

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// Prometheus is a real Prometheus, started by the test on a free loopback
// port, scraping its targets every second as job wamp-router and
// evaluating the rules given; it is stopped when the test ends.
type Prometheus struct {
	api promv1.API
}

// StartPrometheus starts Prometheus with the rules file given, scraping
// the targets (host:port), and waits until it is ready.
func StartPrometheus(t testing.TB, rulesFile string, targets ...string) *Prometheus {
	t.Helper()
	return StartPrometheusWith(t, nil, rulesFile, targets...)
}

// StartPrometheusWith is StartPrometheus with feature flags
// (--enable-feature), e.g. "native-histograms".
func StartPrometheusWith(t testing.TB, features []string, rulesFile string, targets ...string) *Prometheus {
	t.Helper()
	bin := RequireTool(t, "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: wamp-router
    static_configs:
      - targets: ["%s"]
`, rules, strings.Join(targets, `", "`))
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	args := []string{"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	for _, f := range features {
		args = append(args, "--enable-feature="+f)
	}
	cmd := exec.Command(bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	url := "http://" + addr
	testkit.Eventually(t, 10*time.Second, "Prometheus ready", func() (any, bool) {
		rsp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err, false
		}
		rsp.Body.Close()
		return rsp.Status, rsp.StatusCode == http.StatusOK
	})
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &Prometheus{api: promv1.NewAPI(c)}
}

// Query runs an instant PromQL query and returns its samples by the value
// of label (or "" for a single unlabelled sample).
func (p *Prometheus) Query(t testing.TB, q, label string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, _, _, err := p.api.Query(ctx, q, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		t.Fatalf("query %s: got %s, want a vector", q, v.Type())
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric[model.LabelName(label)])] = float64(s.Value)
	}
	return out
}

// WaitForQuery polls q until its samples equal want, which is how a test
// learns that Prometheus has scraped the final values.
func (p *Prometheus) WaitForQuery(t testing.TB, q, label string, want map[string]float64) {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%s = %v", q, want), func() (any, bool) {
		got := p.Query(t, q, label)
		return got, maps.Equal(got, want)
	})
}
