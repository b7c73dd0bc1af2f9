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

	"github.com/php-wamp-observer/php-wamp-observer/app"
)

// rawSession is a bare WebSocket that has joined realm1 as a caller.
func rawSession(t *testing.T, url string) (*websocket.Conn, error) {
	c, _, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}, HandshakeTimeout: 10 * time.Second}).Dial(url, nil)
	if err != nil {
		return nil, err
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`[1,"realm1",{"roles":{"caller":{}}}]`)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, msg, err := c.ReadMessage(); err != nil || len(msg) < 3 || msg[1] != '2' {
		c.Close()
		return nil, fmt.Errorf("join: %q, %v", msg, err)
	}
	return c, nil
}

// TestDisconnectStormLeavesNothingPending drops hundreds of sessions in the
// middle of their calls, again and again: no call stays pending, no session
// is left counted, and (TestMain's goleak) no goroutine leaks.
func TestDisconnectStormLeavesNothingPending(t *testing.T) {
	if testing.Short() {
		t.Skip("opens hundreds of sessions")
	}
	in := startInstance(t, app.Config{CallTimeout: time.Minute})
	release := make(chan struct{})
	defer close(release)
	callee := in.connect(t, serialize.JSON)
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
		conns := make([]*websocket.Conn, sessions)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Go(func() {
				c, err := rawSession(t, in.wampURL)
				if err != nil {
					t.Error(err)
					return
				}
				conns[i] = c
				c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{"timeout":60000},"slow"]`, i+1))
			})
		}
		wg.Wait()
		waitFor(t, fmt.Sprintf("round %d: %d calls in flight", round, sessions), func() bool {
			return scrapeResult(in.scrape(t, "/metrics")).gauge("wamp_router_calls_in_flight") == sessions
		})
		for _, c := range conns { // gone without GOODBYE
			if c != nil {
				c.Close()
			}
		}
		waitFor(t, fmt.Sprintf("round %d: nothing pending", round), func() bool {
			s := scrapeResult(in.scrape(t, "/metrics"))
			return s.gauge("wamp_router_calls_in_flight") == 0 && s.gauge("wamp_router_sessions") == 1
		})
	}
	got := scrapeResult(in.scrape(t, "/metrics"))
	for _, o := range outcomes {
		if n := got.count("wamp_router_"+o+"_seconds", "slow"); n != 0 {
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
	in := startInstance(t, app.Config{CallTimeout: 30 * time.Second})
	callee := in.connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"hi"}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	const sessions = 1000
	conns := make([]*websocket.Conn, sessions)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50) // joins in flight at once
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := rawSession(t, in.wampURL)
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
	if n := scrapeResult(in.scrape(t, "/metrics")).gauge("wamp_router_sessions"); n != sessions+1 {
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
	waitFor(t, "1,000 responses", func() bool {
		return scrapeResult(in.scrape(t, "/metrics")).count("wamp_router_responses_seconds", "hello1") == sessions
	})
}

// TestCalleeDyingMidCallEndsCallsAsErrors: the dealer answers the callers
// of a callee that disappears with wamp.error.canceled.
func TestCalleeDyingMidCallEndsCallsAsErrors(t *testing.T) {
	in := startInstance(t, app.Config{CallTimeout: 10 * time.Second})
	callee, err := rawSession(t, in.wampURL)
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	callee.WriteMessage(websocket.TextMessage, []byte(`[64,1,{},"fragile"]`))
	if _, msg, err := callee.ReadMessage(); err != nil || string(msg[:3]) != "[65" {
		t.Fatalf("register: %q %v", msg, err)
	}
	const calls = 5
	results := make(chan error, calls)
	caller := in.connect(t, serialize.JSON)
	for range calls {
		go func() {
			_, err := caller.Call(context.Background(), "fragile", nil, nil, nil, nil)
			results <- err
		}()
	}
	waitFor(t, "the calls in flight", func() bool {
		return scrapeResult(in.scrape(t, "/metrics")).gauge("wamp_router_calls_in_flight") == calls
	})
	callee.Close() // the callee process dies
	for range calls {
		if got := errURI(<-results); got != "wamp.error.canceled" {
			t.Errorf("caller got %q, want wamp.error.canceled", got)
		}
	}
	waitFor(t, "the calls counted as errors", func() bool {
		s := scrapeResult(in.scrape(t, "/metrics"))
		return s.count("wamp_router_errors_seconds", "fragile") == calls && s.gauge("wamp_router_calls_in_flight") == 0
	})
}
