package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// startRouterInProcess runs the program on free loopback ports.
func startRouterInProcess(t *testing.T) (wampURL, metricsURL, logAddr string) {
	t.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	socks, err := wamplog.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ls := app.Listeners{WAMP: listen(), Metrics: listen(), Log: socks}
	wampURL, metricsURL = "ws://"+ls.WAMP.Addr().String()+"/", "http://"+ls.Metrics.Addr().String()+"/metrics"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{Realm: "realm1", CallTimeout: time.Second, MaxProcedures: 100,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, ls)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return wampURL, metricsURL, socks.Addr().String()
}

// TestLoadsMeasureWhatTheyClaim runs each load mode briefly against a real
// router: the numbers it prints must be the router's.
func TestLoadsMeasureWhatTheyClaim(t *testing.T) {
	wampURL, metricsURL, logAddr := startRouterInProcess(t)
	ctx := context.Background()

	res, err := rpcLoad(ctx, rpcConfig{url: wampURL, realm: "realm1", callers: 2, window: 2,
		duration: 300 * time.Millisecond, warmup: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.calls == 0 || len(res.errors) > 0 || res.p50 <= 0 || res.p99 < res.p50 || res.p999 < res.p99 {
		t.Errorf("rpc: %v", res)
	}

	for _, transport := range []string{"tcp", "udp"} {
		lr, err := logLoad(ctx, logConfig{addr: logAddr, transport: transport, senders: 3, pairs: 500,
			rate: 20_000, metricsURL: metricsURL})
		if err != nil {
			t.Fatal(err)
		}
		if lr.sent != 3000 || lr.ingested != lr.sent || lr.lost() != 0 || lr.linesPerSecond() <= 0 {
			t.Errorf("log over %s: %v", transport, lr)
		}
	}
}
