package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// runSink is the ceiling for the log path: a reader on the same kind of
// socket that only counts lines (newlines), exporting the count under the
// router's own metric name so that the log load reads both alike.
func runSink(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wampload sink", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6667", "address to receive on")
	transport := fs.String("transport", "udp", "udp or tcp")
	metricsAddr := fs.String("metrics", "127.0.0.1:8081", "address to serve /metrics on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	lines := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wamp_observer_log_lines_total", Help: "Lines counted by the bare sink.",
	}, []string{"transport"})
	reg.MustRegister(lines)
	counter := lines.WithLabelValues(*transport)

	ml, err := net.Listen("tcp", *metricsAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ml)
	defer srv.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	switch *transport {
	case "udp":
		pc, err := net.ListenPacket("udp", *addr)
		if err != nil {
			return err
		}
		_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20) // as the router asks
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				counter.Add(float64(bytes.Count(buf[:n], []byte{'\n'})))
			}
		})
		<-ctx.Done()
		return pc.Close()
	case "tcp":
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		var mu sync.Mutex
		conns := map[net.Conn]bool{}
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns[c] = true
				mu.Unlock()
				wg.Go(func() {
					defer c.Close()
					buf := make([]byte, 64<<10)
					for {
						n, err := c.Read(buf)
						counter.Add(float64(bytes.Count(buf[:n], []byte{'\n'})))
						if err != nil {
							if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
								fmt.Println("sink:", err)
							}
							return
						}
					}
				})
			}
		})
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		return nil
	}
	return fmt.Errorf("unknown transport %q", *transport)
}
