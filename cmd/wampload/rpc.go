package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
)

type rpcConfig struct {
	url, realm      string
	callers, window int
	duration        time.Duration
	warmup          time.Duration
	procedures      int // the callee registers hello1..helloN (default 9); callers pick one at random per call
	payload         int // bytes of one string argument each call sends and its answer echoes; 0: none, answer "Hello"
	// mark, when set, is called when the measured window opens and when
	// it closes (from a goroutine of its own), to read the router's CPU.
	mark func()
}

type rpcResult struct {
	calls          int
	elapsed        time.Duration
	p50, p99, p999 time.Duration
	errors         map[string]int
}

func (r rpcResult) perSecond() float64 { return float64(r.calls) / r.elapsed.Seconds() }

func (r rpcResult) String() string {
	return fmt.Sprintf("%d calls in %.1fs: %.0f calls/s, p50 %v, p99 %v, p999 %v, errors %v",
		r.calls, r.elapsed.Seconds(), r.perSecond(), r.p50, r.p99, r.p999, r.errors)
}

func runRPC(ctx context.Context, args []string) error {
	var cfg rpcConfig
	fs := flag.NewFlagSet("wampload rpc", flag.ContinueOnError)
	fs.StringVar(&cfg.url, "url", "ws://127.0.0.1:9090/", "router WebSocket URL")
	fs.StringVar(&cfg.realm, "realm", "realm1", "realm")
	fs.IntVar(&cfg.callers, "callers", 1, "caller sessions (C)")
	fs.IntVar(&cfg.window, "window", 1, "calls each caller keeps outstanding (W)")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured duration")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured run-up")
	fs.IntVar(&cfg.procedures, "procedures", 9, "procedures the callee registers (hello1..helloN), called at random")
	fs.IntVar(&cfg.payload, "payload", 0, "`bytes` of a string argument each call sends and its answer echoes; 0: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := rpcLoad(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println(res)
	return nil
}

func connect(ctx context.Context, url, realm string) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.ConnectNet(ctx, url, client.Config{Realm: realm, Serialization: serialize.JSON, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	return c, nil
}

// rpcLoad runs one callee registering hello1..helloN that answers at once
// (with the call's arguments when it has a payload, else "Hello"), and C
// callers each keeping W calls outstanding, for the duration.
func rpcLoad(ctx context.Context, cfg rpcConfig) (rpcResult, error) {
	if cfg.procedures <= 0 {
		cfg.procedures = 9
	}
	if cfg.callers <= 0 || cfg.window <= 0 {
		return rpcResult{}, errors.New("callers and window must be positive")
	}
	procedures := make([]string, cfg.procedures)
	for i := range procedures {
		procedures[i] = fmt.Sprintf("hello%d", i+1)
	}
	var args wamp.List
	answer := wamp.List{"Hello"}
	if cfg.payload > 0 {
		args = wamp.List{strings.Repeat("x", cfg.payload)}
	}
	callee, err := connect(ctx, cfg.url, cfg.realm)
	if err != nil {
		return rpcResult{}, err
	}
	defer callee.Close()
	for _, p := range procedures {
		if err := callee.Register(p, func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			if len(inv.Arguments) > 0 {
				return client.InvokeResult{Args: inv.Arguments}
			}
			return client.InvokeResult{Args: answer}
		}, nil); err != nil {
			return rpcResult{}, fmt.Errorf("register %s: %w", p, err)
		}
	}

	callers := make([]*client.Client, cfg.callers)
	for i := range callers {
		if callers[i], err = connect(ctx, cfg.url, cfg.realm); err != nil {
			return rpcResult{}, err
		}
		defer callers[i].Close()
	}

	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	type worker struct {
		latencies []time.Duration
		errors    map[string]int
	}
	workers := make([]*worker, cfg.callers*cfg.window)
	var wg sync.WaitGroup
	if cfg.mark != nil {
		wg.Go(func() {
			for _, at := range []time.Time{measureFrom, end} {
				select {
				case <-time.After(time.Until(at)):
					cfg.mark()
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for i := range workers {
		w := &worker{errors: map[string]int{}}
		workers[i] = w
		c := callers[i/cfg.window]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for {
				t0 := time.Now()
				if t0.After(end) || ctx.Err() != nil {
					return
				}
				_, err := c.Call(ctx, procedures[rng.IntN(len(procedures))], nil, args, nil, nil)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil {
					w.errors[errorName(err)]++
					continue
				}
				w.latencies = append(w.latencies, time.Since(t0))
			}
		})
	}
	wg.Wait()

	res := rpcResult{elapsed: cfg.duration, errors: map[string]int{}}
	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.latencies...)
		for k, v := range w.errors {
			res.errors[k] += v
		}
	}
	res.calls = len(all)
	if len(all) == 0 {
		return res, errors.New("no call succeeded")
	}
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	res.p50, res.p99, res.p999 = q(0.5), q(0.99), q(0.999)
	return res, nil
}

func errorName(err error) string {
	var rpcErr client.RPCError
	if errors.As(err, &rpcErr) {
		return string(rpcErr.Err.Error)
	}
	return err.Error()
}
