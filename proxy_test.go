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

// connect joins realm1 at url with nexus's Go client.
func connect(t *testing.T, url string, s serialize.Serialization) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.ConnectNet(ctx, url, client.Config{Realm: harness.Realm, Serialization: s, Logger: testkit.QuietStdLog()})
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
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
		direct := callScript(t, connect(t, upstream.URL, s))
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
