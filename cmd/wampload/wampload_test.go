package main

import (
	"context"
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
