package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

func newTrafficFixture(t *testing.T, opts TrafficOpts) (*Traffic, *prometheus.Registry, *testkit.FakeClock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	opts.Prefix, opts.Now = "wamp_router", clock.Now
	opts.MessageTypes = map[uint8]string{48: "CALL", 50: "RESULT"}
	tr, err := NewTraffic(reg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr, reg, clock
}

func counterOf(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (float64, bool) {
	t.Helper()
	m := testkit.FindMetric(t, reg, name, labels...)
	if m == nil {
		return 0, false
	}
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue(), true
	}
	return m.GetCounter().GetValue(), true
}

// A connection's counts show while it is open and stay, summed, once it
// has closed; message types not named count as other.
func TestTrafficSumsLiveAndClosedConnections(t *testing.T) {
	tr, reg, _ := newTrafficFixture(t, TrafficOpts{})
	a, b := tr.Open(), tr.Open()
	a.Received(48, 10)
	b.Received(48, 20)
	b.Received(99, 5)
	a.Sent(50, 7)
	a.Close()
	a.Close() // once only
	for _, c := range []struct {
		name  string
		label []string
		want  float64
	}{
		{"wamp_router_messages_received_total", []string{"type", "CALL"}, 2},
		{"wamp_router_messages_received_total", []string{"type", "other"}, 1},
		{"wamp_router_messages_sent_total", []string{"type", "RESULT"}, 1},
		{"wamp_router_received_bytes_total", nil, 35},
		{"wamp_router_sent_bytes_total", nil, 7},
	} {
		if got, _ := counterOf(t, reg, c.name, c.label...); got != c.want {
			t.Errorf("%s%v: %v, want %v", c.name, c.label, got, c.want)
		}
	}
}

// Topics are bounded like procedures: an event of a subscription the
// observer does not know (""), a topic too long once made valid UTF-8, and
// topics beyond the bound count under OtherTopic; an idle topic without
// subscribers gives its place back, one with a subscriber keeps it.
func TestTopicsAreBoundedAndIdleOnesGiveBackTheirPlace(t *testing.T) {
	tr, reg, clock := newTrafficFixture(t, TrafficOpts{MaxTopics: 2, MaxTopicLen: 16, TopicIdle: time.Minute})
	unsubscribe := tr.Subscribed("held")
	tr.Published("busy")
	tr.Event("")
	tr.Event(strings.Repeat("\xffa", 8))
	tr.Published("third")
	if got, _ := counterOf(t, reg, "wamp_router_events_total", "topic", OtherTopic); got != 2 {
		t.Errorf("overflow events %v, want 2", got)
	}
	if got, _ := counterOf(t, reg, "wamp_router_other_topics_total"); got != 3 {
		t.Errorf("other topics %v, want 3", got)
	}
	clock.Advance(time.Minute + time.Second)
	tr.Published("third")
	if got, _ := counterOf(t, reg, "wamp_router_publications_total", "topic", "third"); got != 1 {
		t.Errorf("third: %v, want 1 once busy was idle", got)
	}
	if _, ok := counterOf(t, reg, "wamp_router_publications_total", "topic", "busy"); ok {
		t.Error("the idle topic kept its series")
	}
	if got, _ := counterOf(t, reg, "wamp_router_subscribers", "topic", "held"); got != 1 {
		t.Errorf("held: %v subscribers, want 1: a topic with a subscriber keeps its place", got)
	}
	unsubscribe()
	if got, _ := counterOf(t, reg, "wamp_router_subscribers", "topic", "held"); got != 0 {
		t.Errorf("held: %v subscribers after the end, want 0", got)
	}
}
