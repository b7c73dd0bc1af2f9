package app_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestZeroConfigObservesCalls runs the zero Config, a logger aside: it is
// the product, so a call is timed and shows in the scrape, on the default
// realm.
func TestZeroConfigObservesCalls(t *testing.T) {
	ls := harness.Listeners(t, true)
	a, err := app.New(app.Config{Logger: testkit.QuietLog()}, ls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	conn, err := wampraw.Join(context.Background(), "ws://"+ls.WAMP.Addr().String()+"/", app.DefaultRealm, wampraw.Options{})
	if err != nil {
		t.Fatal(err) // not welcomed on the default realm
	}
	defer conn.Close()
	if err := conn.Send(5*time.Second, 48, 1, map[string]any{}, "nobody.registered"); err != nil {
		t.Fatal(err)
	}
	if got, err := conn.Read(5 * time.Second); err != nil || len(got) < 3 || string(got[0]) != "8" || string(got[1]) != "48" || string(got[2]) != "1" {
		t.Fatalf("CALL answered with %s, %v", got, err)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	rsp, err := client.Get("http://" + ls.Metrics.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, err := harness.ParseScrape(rsp.Body)
	rsp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := scrape.Histogram("wamp_router_errors_total_seconds"); !ok || h.GetSampleCount() != 1 {
		t.Errorf("wamp_router_errors_total_seconds: %v, want one call", h)
	}
	if _, ok := scrape.Family("wamp_observer_log_lines_total"); !ok {
		t.Error("no log listener metrics")
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := a.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}

// TestNewReportsConfigErrorsAndClosesTheListeners: an invalid Config is
// reported by New, before anything is served, and the listeners it was
// given are closed all the same.
func TestNewReportsConfigErrorsAndClosesTheListeners(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  app.Config
		want string
	}{
		{"negative call timeout", app.Config{CallTimeout: -time.Second}, "default timeout"},
		{"negative max procedures", app.Config{MaxProcedures: -1}, "max procedures"},
		{"negative pending bound", app.Config{MaxPendingPerSession: -1}, "pending limits"},
		{"bad origin pattern", app.Config{AllowOrigins: []string{"["}}, "origin pattern"},
		{"negative out queue", app.Config{OutQueueSize: -1}, "out queue size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := harness.Listeners(t, true)
			tc.cfg.Logger = testkit.QuietLog()
			a, err := app.New(tc.cfg, ls)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
			if a != nil {
				t.Error("New returned an App with its error")
			}
			for name, ln := range map[string]net.Listener{"WAMP": ls.WAMP, "metrics": ls.Metrics, "log TCP": ls.Log.TCP} {
				if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s listener: Accept gave %v, want it closed", name, err)
				}
			}
			if _, _, err := ls.Log.UDP.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("log UDP socket: ReadFrom gave %v, want it closed", err)
			}
		})
	}
}

func TestNewWantsBothHTTPListeners(t *testing.T) {
	ls := harness.Listeners(t, false)
	if _, err := app.New(app.Config{Logger: testkit.QuietLog()}, app.Listeners{WAMP: ls.WAMP}); err == nil {
		t.Fatal("New accepted no metrics listener")
	}
	if _, err := ls.WAMP.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WAMP listener: Accept gave %v, want it closed", err)
	}
	ls.Metrics.Close()
}
