package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type logConfig struct {
	addr, transport string
	senders         int
	pairs           int     // call+answer pairs per sender
	rate            float64 // lines per second over all senders; 0: as fast as possible
	metricsURL      string  // where the receiver counts its lines
}

type logResult struct {
	sent, ingested int64
	elapsed        time.Duration // first line sent to last line counted
	kernelDrops    float64       // UDP receive-queue drops the receiver saw, if it exports them
}

func (r logResult) lost() int64 { return r.sent - r.ingested }
func (r logResult) linesPerSecond() float64 {
	return float64(r.ingested) / r.elapsed.Seconds()
}
func (r logResult) String() string {
	return fmt.Sprintf("%d lines sent, %d ingested in %.2fs: %.0f lines/s, %d lost (%.3f%%), kernel drops %v",
		r.sent, r.ingested, r.elapsed.Seconds(), r.linesPerSecond(), r.lost(), 100*float64(r.lost())/float64(r.sent), r.kernelDrops)
}

func runLog(ctx context.Context, args []string) error {
	var cfg logConfig
	fs := flag.NewFlagSet("wampload log", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:6666", "log listener address")
	fs.StringVar(&cfg.transport, "transport", "udp", "udp or tcp")
	fs.IntVar(&cfg.senders, "senders", 8, "concurrent senders (K), each with its own socket")
	fs.IntVar(&cfg.pairs, "pairs", 50_000, "call+answer line pairs per sender")
	fs.Float64Var(&cfg.rate, "rate", 0, "offered lines/s over all senders; 0 sends as fast as possible")
	fs.StringVar(&cfg.metricsURL, "metrics", "http://127.0.0.1:8080/metrics", "the receiver's metrics, for its line count")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := logLoad(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Println(res)
	return nil
}

// logLoad sends call+answer pairs in the original tool's format (WAMP v1
// frames, unique ids) and polls the receiver's line count until it stops
// moving.
func logLoad(ctx context.Context, cfg logConfig) (logResult, error) {
	before, _, err := scrapeLines(cfg.metricsURL, cfg.transport)
	if err != nil {
		return logResult{}, err
	}
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, cfg.senders)
	for s := range cfg.senders {
		wg.Go(func() {
			if err := sendPairs(ctx, cfg, s, &sent); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return logResult{}, err
	}

	// Done when every line is counted, or the count has not moved for
	// 300ms (the rest is lost).
	res := logResult{sent: sent.Load()}
	count, lastChange := before, time.Now()
	for {
		n, drops, err := scrapeLines(cfg.metricsURL, cfg.transport)
		if err != nil {
			return logResult{}, err
		}
		res.kernelDrops = drops
		now := time.Now()
		if n != count {
			count, lastChange = n, now
		}
		if n-before >= res.sent || now.Sub(lastChange) >= 300*time.Millisecond {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.ingested = count - before
	res.elapsed = lastChange.Sub(start)
	return res, nil
}

func sendPairs(ctx context.Context, cfg logConfig, sender int, sent *atomic.Int64) error {
	conn, err := net.Dial(cfg.transport, cfg.addr)
	if err != nil {
		return fmt.Errorf("sender %d: %w", sender, err)
	}
	defer conn.Close()
	w := bufio.NewWriterSize(conn, 64<<10)
	perSender := cfg.rate / float64(cfg.senders) // lines/s
	start := time.Now()
	var line []byte
	for i := range cfg.pairs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		id := strconv.Itoa(sender) + "-" + strconv.Itoa(i)
		call := `["wamp","in","[2,\"` + id + `\",\"hello` + strconv.Itoa(i%9+1) + `\",{}]"]`
		answer := `["wamp","in","[3,\"` + id + `\",{}]"]`
		for _, l := range [2]string{call, answer} {
			line = append(append(line[:0], l...), '\n')
			if cfg.transport == "udp" {
				if _, err := conn.Write(line); err != nil {
					return fmt.Errorf("sender %d: %w", sender, err)
				}
			} else if _, err := w.Write(line); err != nil {
				return fmt.Errorf("sender %d: %w", sender, err)
			}
		}
		sent.Add(2)
		if perSender > 0 {
			// Pace: never ahead of the offered rate.
			due := start.Add(time.Duration(float64(2*(i+1)) / perSender * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				if cfg.transport == "tcp" {
					if err := w.Flush(); err != nil {
						return err
					}
				}
				time.Sleep(d)
			}
		}
	}
	return w.Flush()
}

// scrapeLines reads wamp_observer_log_lines_total{transport} and, when the
// receiver exports it, wamp_observer_log_udp_kernel_drops_total.
func scrapeLines(url, transport string) (lines int64, drops float64, err error) {
	rsp, err := http.Get(url)
	if err != nil {
		return 0, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer rsp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(rsp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", url, err)
	}
	mf, ok := mfs["wamp_observer_log_lines_total"]
	if !ok {
		return 0, 0, errors.New("no wamp_observer_log_lines_total in " + url)
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "transport" && l.GetValue() == transport {
				lines = int64(m.GetCounter().GetValue())
			}
		}
	}
	if d, ok := mfs["wamp_observer_log_udp_kernel_drops_total"]; ok && len(d.GetMetric()) == 1 {
		drops = d.GetMetric()[0].GetCounter().GetValue()
	}
	return lines, drops, nil
}
