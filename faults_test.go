package observer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gorilla/websocket"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

// TestDisconnectStormLeavesNothingPending drops hundreds of sessions in the
// middle of their calls, again and again: no call stays pending, no session
// is left counted, and (TestMain's goleak) no goroutine leaks.
func TestDisconnectStormLeavesNothingPending(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of sessions")
	}
	in := harness.Start(t, harness.Config{Timeout: time.Minute})
	release := make(chan struct{})
	defer close(release)
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("slow", func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	const rounds, sessions = 3, 300
	for round := range rounds {
		conns := make([]*wampraw.Conn, sessions)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Go(func() {
				c, err := wampraw.Join(context.Background(), in.WAMPURL, harness.Realm, wampraw.Options{Timeout: 20 * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				conns[i] = c
				c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{"timeout":60000},"slow"]`, i+1))
			})
		}
		wg.Wait()
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: %d calls in flight", round, sessions), func() (any, bool) {
			n, ok := in.Scrape(t).Gauge("wamp_router_calls_in_flight")
			return n, ok && n == sessions
		})
		for _, c := range conns { // gone without GOODBYE
			if c != nil {
				c.Close()
			}
		}
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("round %d: nothing pending", round), func() (any, bool) {
			s := in.Scrape(t)
			inFlight, ok1 := s.Gauge("wamp_router_calls_in_flight")
			open, ok2 := s.Gauge("wamp_router_sessions")
			return fmt.Sprintf("%v calls in flight, %v sessions", inFlight, open), ok1 && ok2 && inFlight == 0 && open == 1
		})
	}
	got := in.Scrape(t)
	for _, o := range outcomes {
		if n, _, _ := got.Summary("wamp_router_"+o+"_seconds", "message", "slow"); n != 0 { // no series: none counted
			t.Errorf("abandoned calls counted as %s: %d", o, n)
		}
	}
}

// TestThousandConcurrentSessions holds 1,000 WebSocket sessions at once,
// each calling through the router.
func TestThousandConcurrentSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 sessions")
	}
	in := harness.Start(t, harness.Config{Timeout: 30 * time.Second})
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"hi"}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	const sessions = 1000
	conns := make([]*wampraw.Conn, sessions)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50) // joins in flight at once
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := wampraw.Join(context.Background(), in.WAMPURL, harness.Realm, wampraw.Options{Timeout: 20 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		return
	}
	if n, ok := in.Scrape(t).Gauge("wamp_router_sessions"); !ok || n != sessions+1 {
		t.Fatalf("%v sessions open, want %d", n, sessions+1)
	}
	// Every session calls at once, and reads its RESULT.
	for i, c := range conns {
		wg.Go(func() {
			if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"hello1"]`, i+1)); err != nil {
				t.Error(err)
				return
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, msg, err := c.ReadMessage(); err != nil || len(msg) < 3 || string(msg[:3]) != "[50" {
				t.Errorf("session %d: got %q, %v", i, msg, err)
			}
		})
	}
	wg.Wait()
	testkit.Eventually(t, 10*time.Second, "1,000 responses", func() (any, bool) {
		n, _, ok := in.Scrape(t).Summary("wamp_router_responses_seconds", "message", "hello1")
		return n, ok && n == sessions
	})
}

// TestCalleeDyingMidCallEndsCallsAsErrors: the dealer answers the callers
// of a callee that disappears with wamp.error.canceled.
func TestCalleeDyingMidCallEndsCallsAsErrors(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: 10 * time.Second})
	callee := in.JoinRaw(t, wampraw.JSON)
	callee.WriteMessage(websocket.TextMessage, []byte(`[64,1,{},"fragile"]`))
	if msg, err := callee.Read(20 * time.Second); err != nil || string(msg[0]) != "65" {
		t.Fatalf("register: %q %v", msg, err)
	}
	const calls = 5
	results := make(chan error, calls)
	caller := in.Connect(t, serialize.JSON)
	for range calls {
		go func() {
			_, err := caller.Call(context.Background(), "fragile", nil, nil, nil, nil)
			results <- err
		}()
	}
	testkit.Eventually(t, 10*time.Second, "the calls in flight", func() (any, bool) {
		n, ok := in.Scrape(t).Gauge("wamp_router_calls_in_flight")
		return n, ok && n == calls
	})
	callee.Close() // the callee process dies
	for range calls {
		if got := harness.ErrorURI(<-results); got != "wamp.error.canceled" {
			t.Errorf("caller got %q, want wamp.error.canceled", got)
		}
	}
	testkit.Eventually(t, 10*time.Second, "the calls counted as errors", func() (any, bool) {
		s := in.Scrape(t)
		errs, _, ok1 := s.Summary("wamp_router_errors_seconds", "message", "fragile")
		inFlight, ok2 := s.Gauge("wamp_router_calls_in_flight")
		return fmt.Sprintf("%d errors, %v calls in flight", errs, inFlight), ok1 && ok2 && errs == calls && inFlight == 0
	})
}
