package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
)

// TestLoadsMeasureWhatTheyClaim runs each load mode briefly against a real
// router: the numbers it prints must be the router's.
func TestLoadsMeasureWhatTheyClaim(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: time.Second, MaxProcedures: 100, Log: true})
	ctx := context.Background()

	res, err := rpcLoad(ctx, rpcConfig{url: in.WAMPURL, realm: harness.Realm, callers: 2, window: 2,
		duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.calls == 0 || len(res.errors) > 0 || res.p50 <= 0 || res.p99 < res.p50 || res.p999 < res.p99 {
		t.Errorf("rpc: %v", res)
	}

	for _, transport := range []string{"tcp", "udp"} {
		lr, err := logLoad(ctx, logConfig{addr: in.LogAddr, transport: transport, senders: 3, pairs: 500,
			rate: 20_000, metricsURL: in.MetricsURL + "/metrics"})
		if err != nil {
			t.Fatal(err)
		}
		if lr.sent != 3000 || lr.ingested != lr.sent || lr.lost() != 0 || lr.linesPerSecond() <= 0 {
			t.Errorf("log over %s: %v", transport, lr)
		}
	}
}

// TestBenchStockSideRuns builds cmd/stocknexus and runs bench's stock side
// briefly, with a payload over many procedures: calls are answered, the
// router's CPU is read, and the table row has the side's figures.
func TestBenchStockSideRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/stocknexus")
	}
	bin := filepath.Join(t.TempDir(), "stocknexus")
	if out, err := exec.Command("go", "build", "-o", bin, "../stocknexus").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	shape := rpcShape{name: "smoke", callers: 2, window: 2, payload: 1 << 10, procedures: 50}
	r, err := runRPCSide(context.Background(), rpcBins{stock: bin}, nil, sideStock, shape, 500*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.res.calls == 0 || len(r.res.errors) > 0 || r.cpu <= 0 || r.cpuPer100k() <= 0 {
		t.Errorf("stock run: %v, CPU %v", r.res, r.cpu)
	}
	row := rpcRow(shape, map[rpcSide][]*sideRun{sideStock: {&r}}, nil)
	if !strings.HasPrefix(row, "| 2×2, 1 KiB, 50 procedures | ") || !strings.Contains(row, " · — · — |") {
		t.Errorf("row %q", row)
	}
}

func TestSelectRPCShapes(t *testing.T) {
	got, err := selectRPCShapes("16×1, 16x1-100kib")
	if err != nil || len(got) != 2 || got[0].name != "16x1" || got[1].payload != 100<<10 {
		t.Errorf("selectRPCShapes: %v, %v", got, err)
	}
	if _, err := selectRPCShapes("17x1"); err == nil {
		t.Error("an unknown shape was accepted")
	}
	if all, _ := selectRPCShapes(""); len(all) != len(rpcShapes()) {
		t.Errorf("empty selected %d shapes", len(all))
	}
}

// TestPHPCostBenchmarkRuns runs php/bench/observer-cost.php briefly against
// bench's own receivers: every case is measured (no timing is judged).
func TestPHPCostBenchmarkRuns(t *testing.T) {
	harness.RequireTool(t, "php")
	c, err := measurePHPCost(context.Background(), "../../php/bench/observer-cost.php", 2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.originalUp <= 0 || c.originalDown <= 0 || c.oursUp <= 0 || c.oursDown <= 0 {
		t.Errorf("a case without a figure: %+v", c)
	}
}
