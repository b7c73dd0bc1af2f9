// Command wampload measures php-wamp-observer: RPC load through a router,
// log-line load into its listener, a bare sink as the ceiling for the
// latter, and a bench mode that runs them all, alternating (RPC against
// stock nexus, cmd/stocknexus, as the anchor too), and prints a table for
// the README.
//
//	wampload rpc   -url ws://127.0.0.1:9090/ -callers 16 -window 32 -duration 5s
//	wampload rpc   -url ws://127.0.0.1:9090/ -callers 16 -payload 10240 -procedures 1000
//	wampload log   -addr 127.0.0.1:6666 -transport udp -senders 8 -rate 100000 -metrics http://127.0.0.1:8080/metrics
//	wampload sink  -addr 127.0.0.1:6667 -transport udp -metrics 127.0.0.1:8081
//	wampload bench
//	wampload bench -only rpc -shapes 16x1,16x1-100KiB -rounds 3 -duration 2s
//	wampload attack -scale small -only ppt,rebinding
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "wampload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: wampload rpc|log|sink|bench|attack [flags]; -h after a mode lists its flags")
	}
	switch mode, rest := args[0], args[1:]; mode {
	case "rpc":
		return runRPC(ctx, rest)
	case "log":
		return runLog(ctx, rest)
	case "sink":
		return runSink(ctx, rest)
	case "bench":
		return runBench(ctx, rest)
	case "attack":
		return runAttack(ctx, rest, os.Stdout)
	default:
		return fmt.Errorf("unknown mode %q: want rpc, log, sink, bench or attack", mode)
	}
}
