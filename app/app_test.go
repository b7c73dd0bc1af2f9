package app_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
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

	conn, _, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial("ws://"+ls.WAMP.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exchange := func(send string) string {
		t.Helper()
		if err := conn.WriteMessage(websocket.TextMessage, []byte(send)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := exchange(`[1,"` + app.DefaultRealm + `",{"roles":{"caller":{}}}]`); !strings.HasPrefix(got, "[2,") {
		t.Fatalf("HELLO answered with %s", got)
	}
	if got := exchange(`[48,1,{},"nobody.registered"]`); !strings.HasPrefix(got, "[8,48,1,") {
		t.Fatalf("CALL answered with %s", got)
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	rsp, err := client.Get("http://" + ls.Metrics.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(rsp.Body)
	rsp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := mfs["wamp_router_errors_total_seconds"].GetMetric(); len(got) != 1 || got[0].GetHistogram().GetSampleCount() != 1 {
		t.Errorf("wamp_router_errors_total_seconds: %v, want one call", got)
	}
	if _, ok := mfs["wamp_observer_log_lines_total"]; !ok {
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
