package observer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// What the router sees of the callee: from each INVOCATION it sends until
// the YIELD or ERROR, per procedure, beside the caller's view of the same
// calls. A call the dealer times out is an INTERRUPT to the callee, which
// ends the callee's view as a timeout too.
func TestCalleeTimeIsTheInvocationUntilItsAnswer(t *testing.T) {
	in := harness.Start(t, harness.Config{})
	callee := in.Connect(t, serialize.JSON)
	register := func(procedure string, h client.InvocationHandler) {
		t.Helper()
		if err := callee.Register(procedure, h, nil); err != nil {
			t.Fatal(err)
		}
	}
	register("work", func(context.Context, *wamp.Invocation) client.InvokeResult {
		time.Sleep(2 * time.Millisecond) // the callee's own work
		return client.InvokeResult{}
	})
	register("fail", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Err: "app.error.failed"}
	})
	register("stuck", func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
		<-ctx.Done() // until the dealer's INTERRUPT
		return client.InvokeResult{Err: wamp.ErrCanceled}
	})
	caller := in.Connect(t, serialize.MSGPACK)
	call := func(procedure string, options wamp.Dict) string {
		_, err := caller.Call(context.Background(), procedure, options, nil, nil, nil)
		return harness.ErrorURI(err)
	}
	for range 5 {
		if got := call("work", nil); got != "" {
			t.Fatalf("work: %s", got)
		}
	}
	for range 3 {
		if got := call("fail", nil); got != "app.error.failed" {
			t.Fatalf("fail: %q", got)
		}
	}
	if got := call("stuck", wamp.Dict{wamp.OptTimeout: 50}); got != string(wamp.ErrTimeout) {
		t.Fatalf("stuck: %q, want the dealer's timeout", got)
	}

	var s *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "the callee's side counted", func() (any, bool) {
		s = in.Scrape(t)
		n, _, _ := s.Summary("wamp_router_callee_timeouts_seconds", "message", "stuck")
		return n, n == 1
	})
	for _, c := range []struct {
		family, procedure string
		want              uint64
	}{
		{"wamp_router_callee_responses_seconds", "work", 5},
		{"wamp_router_callee_errors_seconds", "fail", 3},
		{"wamp_router_callee_timeouts_seconds", "stuck", 1},
		{"wamp_router_responses_seconds", "work", 5},
		{"wamp_router_errors_seconds", "fail", 3},
		{"wamp_router_timeouts_seconds", "stuck", 1},
	} {
		if n, _, ok := s.Summary(c.family, "message", c.procedure); !ok || n != c.want {
			t.Errorf("%s{message=%q}: %d (exists %v), want %d", c.family, c.procedure, n, ok, c.want)
		}
	}
	if n, _ := s.Counter("wamp_router_callee_interrupts_total", "message", "stuck"); n != 1 {
		t.Errorf("interrupts of stuck: %v, want 1", n)
	}
	if n, ok := s.Counter("wamp_router_callee_interrupts_total", "message", "work"); !ok || n != 0 {
		t.Errorf("interrupts of work: %v (exists %v), want 0 from the registration on", n, ok)
	}
	for _, c := range []struct {
		family, procedure, uri string
		want                   float64
	}{
		{"wamp_router_callee_error_reasons_total", "fail", "app.error.failed", 3},
		{"wamp_router_callee_error_reasons_total", "stuck", "wamp.error.timeout", 1},
		{"wamp_router_error_reasons_total", "fail", "app.error.failed", 3},
		{"wamp_router_error_reasons_total", "stuck", "wamp.error.timeout", 1},
	} {
		if n, _ := s.Counter(c.family, "message", c.procedure, "error", c.uri); n != c.want {
			t.Errorf("%s{message=%q,error=%q}: %v, want %v", c.family, c.procedure, c.uri, n, c.want)
		}
	}
	// The same calls, seen from the callee's side of the router, took no
	// longer than the caller waited.
	_, calleeSum, _ := s.Summary("wamp_router_callee_responses_seconds", "message", "work")
	_, callerSum, _ := s.Summary("wamp_router_responses_seconds", "message", "work")
	if calleeSum <= 0 || calleeSum > callerSum {
		t.Errorf("callee time %gs, caller time %gs: want 0 < callee <= caller", calleeSum, callerSum)
	}
}

// A call answered after longer than the deadline a call without a
// timeout option gets (and than its backstop) is a response on both sides
// when the caller's timeout option allowed it: nexus does not forward the
// option to the callee, so the callee side must not give up on its own.
func TestALongCallIsACalleeResponseNotATimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("a call of six seconds")
	}
	in := harness.Start(t, harness.Config{})
	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("long", func(context.Context, *wamp.Invocation) client.InvokeResult {
		time.Sleep(metrics.DealerBackstop + 500*time.Millisecond) // past -timeout and the backstop after it
		return client.InvokeResult{}
	}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Connect(t, serialize.JSON).Call(context.Background(), "long", wamp.Dict{wamp.OptTimeout: 10_000}, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	s := in.Scrape(t)
	for _, family := range []string{"wamp_router_responses_seconds", "wamp_router_callee_responses_seconds"} {
		if n, _, _ := s.Summary(family, "message", "long"); n != 1 {
			t.Errorf("%s{message=long}: %d, want 1", family, n)
		}
	}
	if n, _ := s.SummaryTotal("wamp_router_callee_timeouts_seconds"); n != 0 {
		t.Errorf("the callee side counted %d timeouts", n)
	}
}

// Every ERROR a caller gets counts under its procedure and URI, no callee
// included. Error URIs beyond the bounds count under the overflow value:
// ten of its own per procedure, a hundred over the family, and the spec's
// URIs outside both, so that made-up URIs cannot hide them.
func TestErrorReasonsAreCountedPerProcedureAndBounded(t *testing.T) {
	in := harness.Start(t, harness.Config{})
	callee := in.Connect(t, serialize.JSON)
	procedures := metrics.DefaultMaxErrorURIs/metrics.MaxErrorURIsPerProcedure + 1 // the last finds the family full
	for p := range procedures {
		if err := callee.Register(fmt.Sprintf("many.%d", p), func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			uri, _ := wamp.AsString(inv.Arguments[0])
			return client.InvokeResult{Err: wamp.URI(uri)}
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	caller := in.Connect(t, serialize.JSON)
	fail := func(procedure, uri string) {
		t.Helper()
		if _, err := caller.Call(context.Background(), procedure, nil, wamp.List{uri}, nil, nil); harness.ErrorURI(err) != uri {
			t.Fatalf("%s: %v, want %s", procedure, err, uri)
		}
	}
	for p := range procedures {
		for e := range metrics.MaxErrorURIsPerProcedure {
			fail(fmt.Sprintf("many.%d", p), fmt.Sprintf("app.error.p%d.e%d", p, e))
		}
	}
	fail("many.0", "app.error.one.too.many") // over the procedure's own bound
	fail("many.0", "wamp.error.canceled")    // the spec's: a series still
	for range 2 {
		if _, err := caller.Call(context.Background(), "nobody.home", nil, nil, nil, nil); harness.ErrorURI(err) != string(wamp.ErrNoSuchProcedure) {
			t.Fatalf("nobody.home: %v", err)
		}
	}
	s := in.Scrape(t)
	family, _ := s.Family("wamp_router_error_reasons_total")
	var total float64
	own := map[string]int{}
	for _, m := range family.GetMetric() {
		total += m.GetCounter().GetValue()
		if label(m.GetLabel(), "error") != metrics.OtherError {
			own[label(m.GetLabel(), "message")]++
		}
	}
	if want := float64(procedures*metrics.MaxErrorURIsPerProcedure + 4); total != want {
		t.Errorf("errors counted %v, want %v", total, want)
	}
	for _, c := range []struct {
		procedure string
		own       int
		other     float64
	}{
		{"many.0", metrics.MaxErrorURIsPerProcedure + 1, 1}, // its ten and wamp.error.canceled
		{"many.1", metrics.MaxErrorURIsPerProcedure, 0},
		{fmt.Sprintf("many.%d", procedures-1), 0, float64(metrics.MaxErrorURIsPerProcedure)},
		{"nobody.home", 1, 0},
	} {
		other, _ := s.Counter("wamp_router_error_reasons_total", "message", c.procedure, "error", metrics.OtherError)
		if own[c.procedure] != c.own || other != c.other {
			t.Errorf("%s: %d URIs of its own and %v overflow, want %d and %v", c.procedure, own[c.procedure], other, c.own, c.other)
		}
	}
	if got, _ := s.Counter("wamp_router_error_reasons_total", "message", "nobody.home", "error", string(wamp.ErrNoSuchProcedure)); got != 2 {
		t.Errorf("nobody.home: %v no_such_procedure, want 2 though the family's places are all taken", got)
	}
	if got, _ := s.Counter("wamp_router_calls_refused_total", "reason", "no_callee"); got != 2 {
		t.Errorf("calls refused for no callee %v, want 2", got)
	}
}

// Callees per procedure, and the calls no callee could take: none
// registered, or the callee went away with the call.
func TestCalleesAndRefusedCalls(t *testing.T) {
	in := harness.Start(t, harness.Config{})
	shared := wamp.Dict{wamp.OptInvoke: wamp.InvokeRoundRobin}
	echo := func(context.Context, *wamp.Invocation) client.InvokeResult { return client.InvokeResult{} }
	first, second := in.Connect(t, serialize.JSON), in.Connect(t, serialize.JSON)
	for _, c := range []*client.Client{first, second} {
		if err := c.Register("shared", echo, shared); err != nil {
			t.Fatal(err)
		}
	}
	callees := func(want float64) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%v callees of shared", want), func() (any, bool) {
			n, _ := in.Scrape(t).Gauge("wamp_router_callees", "message", "shared")
			return n, n == want
		})
	}
	callees(2)
	second.Close()
	callees(1)

	leaving := in.Connect(t, serialize.JSON)
	if err := leaving.Register("hang", func(ctx context.Context, _ *wamp.Invocation) client.InvokeResult {
		<-ctx.Done()
		return client.InvokeResult{Err: wamp.ErrCanceled}
	}, nil); err != nil {
		t.Fatal(err)
	}
	caller := in.Connect(t, serialize.JSON)
	answered := make(chan string, 1)
	go func() {
		_, err := caller.Call(context.Background(), "hang", nil, nil, nil, nil)
		answered <- harness.ErrorURI(err)
	}()
	testkit.Eventually(t, 10*time.Second, "the callee holding the call", func() (any, bool) {
		n, _ := in.Scrape(t).Gauge("wamp_router_callee_calls_in_flight")
		return n, n == 1
	})
	leaving.Close()
	if got := <-answered; got != string(wamp.ErrCanceled) {
		t.Errorf("the caller got %q, want %s", got, wamp.ErrCanceled)
	}
	testkit.Eventually(t, 10*time.Second, "the call refused as its callee left", func() (any, bool) {
		n, _ := in.Scrape(t).Counter("wamp_router_calls_refused_total", "reason", "callee_gone")
		return n, n == 1
	})
	if n, _ := in.Scrape(t).Counter("wamp_router_calls_refused_total", "reason", "no_callee"); n != 0 {
		t.Errorf("no_callee %v, want 0", n)
	}
}

// Publications received and events delivered per topic, and the
// subscribers of each; topics beyond the bound go to the overflow value.
func TestPublicationsEventsAndSubscribersPerTopic(t *testing.T) {
	in := harness.Start(t, harness.Config{MaxProcedures: 3})
	events := make(chan *wamp.Event, 64)
	subscribers := []*client.Client{in.Connect(t, serialize.JSON), in.Connect(t, serialize.MSGPACK)}
	for _, c := range subscribers {
		if err := c.SubscribeChan("news", events, nil); err != nil {
			t.Fatal(err)
		}
	}
	publisher := in.Connect(t, serialize.JSON)
	acked := wamp.Dict{wamp.OptAcknowledge: true}
	for range 4 {
		if err := publisher.Publish("news", acked, wamp.List{"hello"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 8 {
		select {
		case <-events:
		case <-time.After(10 * time.Second):
			t.Fatal("an event was not delivered")
		}
	}
	for _, topic := range []string{"t.1", "t.2", "t.3"} { // news takes the first of the 3 places
		if err := publisher.Publish(topic, acked, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := in.Scrape(t)
	for _, c := range []struct {
		family, topic string
		want          float64
	}{
		{"wamp_router_publications_total", "news", 4},
		{"wamp_router_events_total", "news", 8},
		{"wamp_router_publications_total", "t.1", 1},
		{"wamp_router_publications_total", "t.2", 1},
		{"wamp_router_publications_total", metrics.OtherTopic, 1},
		{"wamp_router_events_total", metrics.OtherTopic, 0},
	} {
		if n, ok := s.Counter(c.family, "topic", c.topic); !ok || n != c.want {
			t.Errorf("%s{topic=%q}: %v (exists %v), want %v", c.family, c.topic, n, ok, c.want)
		}
	}
	if n, _ := s.Counter("wamp_router_other_topics_total"); n != 1 {
		t.Errorf("other topics %v, want 1", n)
	}
	if n, _ := s.Gauge("wamp_router_subscribers", "topic", "news"); n != 2 {
		t.Errorf("subscribers of news %v, want 2", n)
	}
	if err := subscribers[0].Unsubscribe("news"); err != nil {
		t.Fatal(err)
	}
	subscribers[1].Close()
	testkit.Eventually(t, 10*time.Second, "news without subscribers", func() (any, bool) {
		n, _ := in.Scrape(t).Gauge("wamp_router_subscribers", "topic", "news")
		return n, n == 0
	})
}

// Messages and bytes each way, by type, exactly as on the wire, and
// sessions opened and closed with their reason.
func TestTrafficCountsEveryMessageAndByteOnTheWire(t *testing.T) {
	in := harness.Start(t, harness.Config{})
	var received, sent int // by this test's count
	dial := func() *wampraw.Conn {
		t.Helper()
		c, _, err := wampraw.Dial(context.Background(), in.WAMPURL, wampraw.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c *wampraw.Conn, frame string) {
		t.Helper()
		if err := c.SendBytes(5*time.Second, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		received += len(frame)
	}
	receive := func(c *wampraw.Conn, typ string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "["+typ+",") {
			t.Fatalf("got %s, want type %s", b, typ)
		}
		sent += len(b)
	}
	conn := dial()
	const hello = `[1,"realm1",{"roles":{"caller":{}}}]`
	send(conn, hello)
	receive(conn, "2") // WELCOME
	send(conn, `[48,1,{},"nobody.home"]`)
	receive(conn, "8") // ERROR
	send(conn, `[6,{},"wamp.close.normal"]`)
	receive(conn, "6") // GOODBYE

	lost := dial()
	send(lost, hello)
	receive(lost, "2")
	lost.Close() // no GOODBYE

	var s *harness.Scrape
	testkit.Eventually(t, 10*time.Second, "both sessions closed", func() (any, bool) {
		s = in.Scrape(t)
		n, _ := s.Counter("wamp_router_sessions_closed_total", "reason", "connection_lost")
		return n, n == 1
	})
	for _, c := range []struct {
		family, typ string
		want        float64
	}{
		{"wamp_router_messages_received_total", "HELLO", 2},
		{"wamp_router_messages_received_total", "CALL", 1},
		{"wamp_router_messages_received_total", "GOODBYE", 1},
		{"wamp_router_messages_received_total", "RESULT", 0},
		{"wamp_router_messages_sent_total", "WELCOME", 2},
		{"wamp_router_messages_sent_total", "ERROR", 1},
		{"wamp_router_messages_sent_total", "GOODBYE", 1},
	} {
		if n, ok := s.Counter(c.family, "type", c.typ); !ok || n != c.want {
			t.Errorf("%s{type=%q}: %v (exists %v), want %v", c.family, c.typ, n, ok, c.want)
		}
	}
	if n, _ := s.Counter("wamp_router_sessions_opened_total"); n != 2 {
		t.Errorf("sessions opened %v, want 2", n)
	}
	if n, _ := s.Counter("wamp_router_sessions_closed_total", "reason", "wamp.close.normal"); n != 1 {
		t.Errorf("sessions closed normally %v, want 1", n)
	}
	if n, _ := s.Counter("wamp_router_received_bytes_total"); n != float64(received) {
		t.Errorf("bytes received %v, want %d", n, received)
	}
	if n, _ := s.Counter("wamp_router_sent_bytes_total"); n != float64(sent) {
		t.Errorf("bytes sent %v, want %d", n, sent)
	}
}

// With more than one realm, every router series carries its realm, and
// each realm counts its own calls.
func TestEveryRealmHasItsOwnSeries(t *testing.T) {
	in := harness.Start(t, harness.Config{OtherRealms: []string{"realm2"}})
	for realm, calls := range map[string]int{harness.Realm: 2, "realm2": 3} {
		callee := in.ConnectTo(t, realm, serialize.JSON)
		if err := callee.Register("hello", func(context.Context, *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{}
		}, nil); err != nil {
			t.Fatal(err)
		}
		caller := in.ConnectTo(t, realm, serialize.JSON)
		for range calls {
			if _, err := caller.Call(context.Background(), "hello", nil, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A series in every family: an error reason, a topic.
		if _, err := caller.Call(context.Background(), "nobody.home", nil, nil, nil, nil); err == nil {
			t.Fatal("nobody.home answered")
		}
		if err := caller.Publish("news", wamp.Dict{wamp.OptAcknowledge: true}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := in.Scrape(t)
	for realm, want := range map[string]uint64{harness.Realm: 2, "realm2": 3} {
		for _, family := range []string{"wamp_router_responses_seconds", "wamp_router_callee_responses_seconds"} {
			if n, _, _ := s.Summary(family, "message", "hello", "realm", realm); n != want {
				t.Errorf("%s in %s: %d, want %d", family, realm, n, want)
			}
		}
		if n, _ := s.Counter("wamp_router_messages_received_total", "type", "CALL", "realm", realm); n != float64(want+1) {
			t.Errorf("CALLs received in %s: %v, want %d (and nobody.home)", realm, n, want)
		}
	}
	families := describeFamilies(t, in.MetricsURL+"/metrics")
	for _, line := range families {
		if strings.HasPrefix(line, "wamp_router") && !strings.Contains(strings.Fields(line)[2], "realm") {
			t.Errorf("a router family without a realm label: %s", line)
		}
	}
	for _, want := range []string{"wamp_router_error_reasons_total", "wamp_router_callee_interrupts_total", "wamp_router_publications_total",
		"wamp_router_subscribers", "wamp_router_callees", "wamp_router_messages_sent_total"} {
		if !slices.ContainsFunc(families, func(line string) bool { return strings.HasPrefix(line, want+" ") }) {
			t.Errorf("%s has no series to check", want)
		}
	}
}

func label(pairs []*dto.LabelPair, name string) string {
	for _, l := range pairs {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
