package harness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const exposition = `# TYPE c_total counter
c_total{reason="a"} 3
c_total{reason="b"} 4
# TYPE g gauge
g 7
# TYPE s summary
s_sum{message="hello1"} 0.5
s_count{message="hello1"} 2
s_sum{message="hello2"} 1.5
s_count{message="hello2"} 5
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="+Inf"} 2
h_sum 3
h_count 2
`

func TestScrapeLookupsSayWhetherTheSeriesExists(t *testing.T) {
	s, err := ParseScrape(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Counter("c_total", "reason", "b"); !ok || v != 4 {
		t.Errorf("counter b: %v %v", v, ok)
	}
	if _, ok := s.Counter("c_total", "reason", "z"); ok {
		t.Error("counter z found")
	}
	if _, ok := s.Counter("c_total"); ok {
		t.Error("an ambiguous counter lookup found a series")
	}
	if v, ok := s.CounterTotal("c_total"); !ok || v != 7 {
		t.Errorf("counter total: %v %v", v, ok)
	}
	if v, ok := s.Gauge("g"); !ok || v != 7 {
		t.Errorf("gauge: %v %v", v, ok)
	}
	if _, ok := s.Gauge("c_total", "reason", "a"); ok {
		t.Error("a counter read as a gauge")
	}
	if n, sum, ok := s.Summary("s", "message", "hello2"); !ok || n != 5 || sum != 1.5 {
		t.Errorf("summary: %v %v %v", n, sum, ok)
	}
	if _, _, ok := s.Summary("s", "message", "hello3"); ok {
		t.Error("summary hello3 found")
	}
	if n, ok := s.SummaryTotal("s"); !ok || n != 7 {
		t.Errorf("summary total: %v %v", n, ok)
	}
	if _, ok := s.SummaryTotal("missing"); ok {
		t.Error("a missing family has a total")
	}
	if h, ok := s.Histogram("h"); !ok || h.GetSampleCount() != 2 || len(h.GetBucket()) != 2 {
		t.Errorf("histogram: %v %v", h, ok)
	}
}

// TestAnInstanceServesEveryClient starts an instance with its log
// listener and drives it with each kind of client the harness has.
func TestAnInstanceServesEveryClient(t *testing.T) {
	in := Start(t, Config{Timeout: time.Second, Log: true})
	in.CallThroughEachPath(t)
	raw := in.JoinRaw(t, wampraw.JSON)
	if err := raw.Send(5*time.Second, 48, 1, map[string]any{}, "hello1", []any{}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ReadUntil(5*time.Second, 50); err != nil {
		t.Fatalf("RESULT: %v", err)
	}
	if in.JoinRaw(t, wampraw.MsgPack).Session == 0 {
		t.Error("no session id in the msgpack WELCOME")
	}
	_, err := in.Connect(t, serialize.CBOR).Call(context.Background(), "nobody.registered", nil, nil, nil, nil)
	if got := ErrorURI(err); got != "wamp.error.no_such_procedure" {
		t.Errorf("error %q", got)
	}
	testkit.Eventually(t, 10*time.Second, "two calls of hello1 through the router", func() (any, bool) {
		n, _, ok := in.Scrape(t).Summary("wamp_router_responses_seconds", "message", "hello1")
		return n, ok && n == 2
	})
}
