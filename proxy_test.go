package observer_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// The proxy tests put the router in front of another one (-upstream): stock
// nexus in a process of its own, or this program in embedded mode, and
// check that clients get through the proxy exactly what they get from the
// upstream directly, and that the proxy counts exactly that.

// received is what a caller got for one call: the result's request id and
// arguments, or the error's URI and arguments.
type received struct {
	Request  wamp.ID
	Args     wamp.List
	Kwargs   wamp.Dict
	Error    wamp.URI
	Progress []wamp.List
}

// callScript makes the same calls, in the same order, over c, and returns
// what c received for each.
func callScript(t *testing.T, c *client.Client) []received {
	t.Helper()
	var got []received
	call := func(proc string, opts wamp.Dict, args wamp.List) {
		var r received
		var progress client.ProgressHandler
		if _, ok := opts["receive_progress"]; ok {
			progress = func(res *wamp.Result) { r.Progress = append(r.Progress, res.Arguments) }
		}
		res, err := c.Call(context.Background(), proc, opts, args, nil, progress)
		switch e := err.(type) {
		case nil:
			r.Request, r.Args, r.Kwargs = res.Request, res.Arguments, res.ArgumentsKw
		case client.RPCError:
			r.Request, r.Error, r.Args, r.Kwargs = e.Err.Request, e.Err.Error, e.Err.Arguments, e.Err.ArgumentsKw
		default:
			t.Fatalf("call %s: %v", proc, err)
		}
		got = append(got, r)
	}
	for i := range 5 {
		call("proxy.echo", nil, wamp.List{"hi", i, 1.5, map[string]any{"k": []any{true, nil}}})
	}
	for range 3 {
		call("proxy.fail", nil, nil)
	}
	call("proxy.hang", wamp.Dict{"timeout": 100}, nil)
	call("proxy.progress", wamp.Dict{"receive_progress": true}, nil)
	call("nobody.registered", nil, nil)
	return got
}

// registerScriptCallee registers callScript's procedures on c.
func registerScriptCallee(t *testing.T, c *client.Client) {
	t.Helper()
	handlers := map[string]client.InvocationHandler{
		"proxy.echo": func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{Args: inv.Arguments, Kwargs: wamp.Dict{"n": len(inv.Arguments)}}
		},
		"proxy.fail": func(context.Context, *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{Err: "app.error.proxy", Args: wamp.List{"as asked"}, Kwargs: wamp.Dict{"why": "test"}}
		},
		"proxy.hang": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
			<-ctx.Done() // the dealer's INTERRUPT, on the CALL timeout option
			return client.InvocationCanceled
		},
		"proxy.progress": func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
			for i := range 3 {
				if err := c.SendProgress(ctx, wamp.List{i}, nil); err != nil {
					return client.InvokeResult{Err: "app.error.progress"}
				}
			}
			return client.InvokeResult{Args: wamp.List{"done"}}
		},
	}
	for proc, h := range handlers {
		if err := c.Register(proc, h, nil); err != nil {
			t.Fatalf("register %s: %v", proc, err)
		}
	}
}

// TestThroughTheProxyClientsGetWhatStockNexusSends: a callee behind the
// proxy serves callers through the proxy and callers connected to stock
// nexus directly, over each serializer. Each caller receives the same
// results, errors, progressive results and request ids either way, and the
// proxy counts exactly its own callers' calls on the caller side and every
// invocation of its callee on the callee side.
func TestThroughTheProxyClientsGetWhatStockNexusSends(t *testing.T) {
	upstream := harness.StartStockNexus(t)
	proxy := harness.Start(t, harness.Config{Upstream: upstream.URL})
	registerScriptCallee(t, proxy.Connect(t, serialize.JSON))

	serializers := []serialize.Serialization{serialize.JSON, serialize.MSGPACK, serialize.CBOR}
	for _, s := range serializers {
		direct := callScript(t, harness.ConnectURL(t, upstream.URL, harness.Realm, s))
		proxied := callScript(t, proxy.Connect(t, s))
		if !reflect.DeepEqual(direct, proxied) {
			t.Errorf("serializer %v: through the proxy\n%+v\ndirectly\n%+v", s, proxied, direct)
		}
	}

	var got *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "no calls in flight, one session left", func() (any, bool) {
		got = proxy.Scrape(t)
		inFlight, ok1 := got.Gauge("wamp_router_calls_in_flight")
		sessions, ok2 := got.Gauge("wamp_router_sessions")
		return fmt.Sprintf("%v calls in flight, %v sessions", inFlight, sessions), ok1 && ok2 && inFlight == 0 && sessions <= 4
	})
	n := uint64(len(serializers))
	want := map[string][3]uint64{ // responses, errors, timeouts, per side
		"proxy.echo":        {5 * n, 0, 0},
		"proxy.fail":        {0, 3 * n, 0},
		"proxy.hang":        {0, 0, n},
		"proxy.progress":    {n, 0, 0},
		"nobody.registered": {0, n, 0},
	}
	for msg, counts := range want {
		for i, outcome := range outcomes {
			if count, _, _ := got.Summary("wamp_router_"+outcome+"_seconds", "message", msg); count != counts[i] {
				t.Errorf("caller side, %s %s: %d, want %d", msg, outcome, count, counts[i])
			}
			if msg == "nobody.registered" {
				continue
			}
			// The callee served the direct callers too; the dealer's
			// timeouts reach it as INTERRUPTs.
			if count, _, _ := got.Summary("wamp_router_callee_"+outcome+"_seconds", "message", msg); count != 2*counts[i] {
				t.Errorf("callee side, %s %s: %d, want %d", msg, outcome, count, 2*counts[i])
			}
		}
	}
}

// TestTheProxyAndItsUpstreamAgreeCallForCall: the proxy in front of this
// program in embedded mode. Both count the same calls, per procedure and
// outcome, on the caller and the callee side. The proxy sees each CALL
// before the upstream and each answer after it, so its caller-side sums of
// durations are at least the upstream's for the same calls; and it sees
// each INVOCATION after the upstream and the callee's answer before it, so
// its callee-side sums are at most the upstream's (but for timeouts, see
// below).
func TestTheProxyAndItsUpstreamAgreeCallForCall(t *testing.T) {
	upstream := harness.Start(t, harness.Config{})
	proxy := harness.Start(t, harness.Config{Upstream: upstream.WAMPURL})
	registerScriptCallee(t, proxy.Connect(t, serialize.JSON))
	done := make(chan struct{})
	for _, s := range []serialize.Serialization{serialize.JSON, serialize.MSGPACK, serialize.CBOR} {
		c := proxy.Connect(t, s)
		go func() {
			defer func() { done <- struct{}{} }()
			for range 4 {
				callScript(t, c)
			}
		}()
	}
	for range 3 {
		<-done
	}

	var atProxy, atUpstream *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "no calls in flight at either", func() (any, bool) {
		atProxy, atUpstream = proxy.Scrape(t), upstream.Scrape(t)
		p, ok1 := atProxy.Gauge("wamp_router_calls_in_flight")
		u, ok2 := atUpstream.Gauge("wamp_router_calls_in_flight")
		return fmt.Sprintf("%v at the proxy, %v upstream", p, u), ok1 && ok2 && p == 0 && u == 0
	})
	compared := 0
	for _, family := range []string{"wamp_router", "wamp_router_callee"} {
		for _, msg := range []string{"proxy.echo", "proxy.fail", "proxy.hang", "proxy.progress", "nobody.registered"} {
			for _, outcome := range outcomes {
				name := family + "_" + outcome + "_seconds"
				pn, psum, _ := atProxy.Summary(name, "message", msg)
				un, usum, _ := atUpstream.Summary(name, "message", msg)
				if pn != un {
					t.Errorf("%s %s: %d at the proxy, %d upstream", name, msg, pn, un)
				}
				if family == "wamp_router" && psum < usum {
					t.Errorf("%s %s: %gs at the proxy, less than the upstream's %gs", name, msg, psum, usum)
				}
				// A callee-side timeout ends with the dealer's INTERRUPT,
				// which the proxy sees after the upstream as it did the
				// INVOCATION: either may be the longer.
				if family == "wamp_router_callee" && outcome != "timeouts" && psum > usum {
					t.Errorf("%s %s: %gs at the proxy, more than the upstream's %gs", name, msg, psum, usum)
				}
				if pn > 0 {
					compared++
				}
			}
		}
	}
	if compared < 8 {
		t.Errorf("only %d series with calls compared", compared)
	}
	if n, _ := atProxy.SummaryTotal("wamp_router_responses_seconds"); n != 3*4*6 {
		t.Errorf("%d responses at the proxy, want %d", n, 3*4*6)
	}
}

// TestAKilledUpstreamClosesItsClientsWhoComeBack: stock nexus is killed
// (no GOODBYE, no close frame) under a callee and callers with calls in
// flight. Every client's connection is closed, each loss is counted, no
// call is left pending; a client that connects while the upstream is down
// is refused and counted; once the upstream is back, clients join through
// the same proxy and are answered.
func TestAKilledUpstreamClosesItsClientsWhoComeBack(t *testing.T) {
	upstream := harness.StartStockNexus(t)
	proxy := harness.Start(t, harness.Config{Upstream: upstream.URL})
	callee := proxy.Connect(t, serialize.JSON)
	registerScriptCallee(t, callee)
	clients := []*client.Client{callee}
	for _, s := range []serialize.Serialization{serialize.JSON, serialize.MSGPACK, serialize.CBOR} {
		c := proxy.Connect(t, s)
		clients = append(clients, c)
		go func() { _, _ = c.Call(context.Background(), "proxy.hang", wamp.Dict{"timeout": 60_000}, nil, nil, nil) }()
	}
	testkit.Eventually(t, 10*time.Second, "3 calls in flight", func() (any, bool) {
		n, ok := proxy.Scrape(t).Gauge("wamp_router_calls_in_flight")
		return n, ok && n == 3
	})

	upstream.Kill()
	for i, c := range clients {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d still connected 10s after the upstream was killed", i)
		}
	}
	testkit.Eventually(t, 10*time.Second, "4 losses counted, no session, nothing in flight", func() (any, bool) {
		s := proxy.Scrape(t)
		lost, _ := s.Counter("wamp_observer_ws_rejections_total", "reason", "upstream_lost")
		sessions, _ := s.Gauge("wamp_router_sessions")
		inFlight, _ := s.Gauge("wamp_router_calls_in_flight")
		return fmt.Sprintf("%v lost, %v sessions, %v in flight", lost, sessions, inFlight), lost == 4 && sessions == 0 && inFlight == 0
	})
	if _, err := client.ConnectNet(context.Background(), proxy.WAMPURL, client.Config{Realm: harness.Realm, Logger: testkit.QuietStdLog()}); err == nil {
		t.Fatal("joined through the proxy with the upstream down")
	}
	if n, _ := proxy.Scrape(t).Counter("wamp_observer_ws_rejections_total", "reason", "upstream_unavailable"); n != 1 {
		t.Errorf("%v upstream_unavailable, want 1", n)
	}

	upstream.Restart()
	registerScriptCallee(t, proxy.Connect(t, serialize.JSON))
	if got := callScript(t, proxy.Connect(t, serialize.JSON)); got[0].Error != "" || len(got[0].Args) != 4 {
		t.Errorf("after the restart, the first call got %+v", got[0])
	}
}

// eachDeployment runs test against the router in its two modes: embedded,
// and as a proxy in front of stock nexus in a process of its own.
func eachDeployment(t *testing.T, cfg harness.Config, test func(t *testing.T, in *harness.Instance)) {
	t.Run("embedded", func(t *testing.T) { test(t, harness.Start(t, cfg)) })
	t.Run("proxy to stock nexus", func(t *testing.T) {
		cfg.Upstream = harness.StartStockNexus(t).URL
		test(t, harness.Start(t, cfg))
	})
}
