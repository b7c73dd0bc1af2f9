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

var procedures = []string{"hello1", "hello2", "hello3", "hello4", "hello5", "hello6", "hello7", "hello8", "hello9"}

// rpcLoad runs one callee registering hello1..hello9 that answers at once,
// and C callers each keeping W calls outstanding, for the duration.
func rpcLoad(ctx context.Context, cfg rpcConfig) (rpcResult, error) {
	callee, err := connect(ctx, cfg.url, cfg.realm)
	if err != nil {
		return rpcResult{}, err
	}
	defer callee.Close()
	answer := wamp.List{"Hello"}
	for _, p := range procedures {
		if err := callee.Register(p, func(context.Context, *wamp.Invocation) client.InvokeResult {
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
				_, err := c.Call(ctx, procedures[rng.IntN(len(procedures))], nil, nil, nil, nil)
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
