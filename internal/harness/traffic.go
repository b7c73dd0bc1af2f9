package harness

import (
	"context"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// CallThroughEachPath puts one call through each path of an instance
// started with Config.Log: hello1 through the router (a callee of nexus's
// client answering a caller's call), and a call of hello1 and its answer
// logged over UDP; it returns once both are counted. The scrape then holds
// every kind of family the program makes.
func (in *Instance) CallThroughEachPath(t testing.TB) {
	t.Helper()
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Connect(t, serialize.JSON).Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	conn := Dial(t, "udp", in.LogAddr)
	if _, err := conn.Write([]byte(testkit.LogLine("wamp", "out", `[48,1,{},"hello1"]`) + "\n" + testkit.LogLine("wamp", "out", `[50,1,{}]`) + "\n")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the logged call counted", func() (any, bool) {
		n, _, ok := in.Scrape(t).Summary("wamp_out_responses_seconds", "message", "hello1")
		return n, ok && n == 1
	})
}
