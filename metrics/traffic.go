package metrics

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Traffic counts what a router sees beyond the timing of calls: WAMP
// messages and bytes each way, sessions opened and closed, calls refused
// for want of a callee that could take them, publications, events and
// subscribers per topic, and callees per procedure. Label values come from
// fixed lists the caller gives (message types, close and refusal reasons)
// or are bounded like procedures (topics), so its scrape has a worst-case
// size.
//
// Message counts are written per connection (ConnTraffic), each by the
// connection's own goroutines, so that counting never bounces a cache line
// shared by all connections; a scrape sums the live connections and the
// totals of those gone.
type Traffic struct {
	types      []string   // message type label values, by index; the last is "other"
	typeIndex  [256]uint8 // WAMP message code to index in types
	closes     []string   // close reason label values
	refusals   []string   // refusal reason label values
	callees    *Family    // whose registrations are callees; may be nil
	closeIdx   map[string]int
	refusalIdx map[string]int

	mu      sync.Mutex
	live    map[*ConnTraffic]struct{}
	retired connCounts

	opened  atomic.Uint64
	closed  []atomic.Uint64 // by closes
	refused []atomic.Uint64 // by refusals
	topics  topicSet

	descs trafficDescs
}

type trafficDescs struct {
	received, sent, receivedBytes, sentBytes *prometheus.Desc
	opened, closed, refused                  *prometheus.Desc
	publications, events, subscribers        *prometheus.Desc
	otherTopics, callees                     *prometheus.Desc
}

// TrafficOpts configures a Traffic.
type TrafficOpts struct {
	// Prefix names the families, e.g. "wamp_router".
	Prefix string
	// MessageTypes names the WAMP message types by code (1 is "HELLO");
	// any other code counts as "other".
	MessageTypes map[uint8]string
	// CloseReasons and RefusalReasons are the label values of
	// <prefix>_sessions_closed_total and <prefix>_calls_refused_total.
	// Reasons not listed are not counted.
	CloseReasons, RefusalReasons []string
	// Callees is the family whose procedures' registrations are exposed
	// as <prefix>_callees; none when nil.
	Callees *Family
	// MaxTopics, MaxTopicLen and TopicIdle bound topics as FamilyOpts
	// bounds procedures, with the same defaults; beyond them, topics are
	// counted under OtherTopic.
	MaxTopics, MaxTopicLen int
	TopicIdle              time.Duration
	// ConstLabels are added to every series, e.g. the realm.
	ConstLabels prometheus.Labels
	// Now is the clock for topics' idleness; time.Now when nil.
	Now func() time.Time
}

// OtherTopic is the topic label value of publications, events and
// subscribers of topics beyond the bounds. It is no valid URI.
const OtherTopic = "(other topics)"

// NewTraffic creates a Traffic and registers it with reg.
func NewTraffic(reg prometheus.Registerer, opts TrafficOpts) (*Traffic, error) {
	if opts.MaxTopics == 0 {
		opts.MaxTopics = DefaultMaxProcedures
	}
	if opts.MaxTopicLen == 0 {
		opts.MaxTopicLen = DefaultMaxProcedureLen
	}
	if opts.TopicIdle == 0 {
		opts.TopicIdle = DefaultProcedureIdle
	}
	if opts.MaxTopics < 1 || opts.MaxTopicLen < 1 || opts.TopicIdle < 0 {
		return nil, fmt.Errorf("traffic %q: topic bounds must be positive, got %d, %d and %v", opts.Prefix, opts.MaxTopics, opts.MaxTopicLen, opts.TopicIdle)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Traffic{
		closes: opts.CloseReasons, refusals: opts.RefusalReasons, callees: opts.Callees,
		closeIdx: map[string]int{}, refusalIdx: map[string]int{},
		live:    map[*ConnTraffic]struct{}{},
		closed:  make([]atomic.Uint64, len(opts.CloseReasons)),
		refused: make([]atomic.Uint64, len(opts.RefusalReasons)),
	}
	for i := range t.typeIndex {
		t.typeIndex[i] = uint8(len(opts.MessageTypes)) // other
	}
	for _, code := range slices.Sorted(maps.Keys(opts.MessageTypes)) {
		t.typeIndex[code] = uint8(len(t.types))
		t.types = append(t.types, opts.MessageTypes[code])
	}
	t.types = append(t.types, "other")
	for i, r := range opts.CloseReasons {
		t.closeIdx[r] = i
	}
	for i, r := range opts.RefusalReasons {
		t.refusalIdx[r] = i
	}
	t.retired = newConnCounts(len(t.types))
	t.topics = topicSet{max: opts.MaxTopics, maxLen: opts.MaxTopicLen, idleAfter: opts.TopicIdle, now: opts.Now, epoch: opts.Now()}
	t.topics.series.Store(&map[string]*topicSeries{})

	p, cl := opts.Prefix, opts.ConstLabels
	title := strings.ReplaceAll(p, "_", " ")
	t.descs = trafficDescs{
		received:      prometheus.NewDesc(p+"_messages_received_total", "WAMP messages the "+title+" received from clients, by type.", []string{"type"}, cl),
		sent:          prometheus.NewDesc(p+"_messages_sent_total", "WAMP messages the "+title+" sent to clients, by type.", []string{"type"}, cl),
		receivedBytes: prometheus.NewDesc(p+"_received_bytes_total", "Bytes of the WAMP messages the "+title+" received, as serialized on the wire.", nil, cl),
		sentBytes:     prometheus.NewDesc(p+"_sent_bytes_total", "Bytes of the WAMP messages the "+title+" sent, as serialized on the wire.", nil, cl),
		opened:        prometheus.NewDesc(p+"_sessions_opened_total", "Sessions the "+title+" welcomed.", nil, cl),
		closed:        prometheus.NewDesc(p+"_sessions_closed_total", "Sessions of the "+title+" that ended, by reason.", []string{"reason"}, cl),
		refused:       prometheus.NewDesc(p+"_calls_refused_total", "Calls the "+title+" answered with an ERROR because no callee could take them, by reason.", []string{"reason"}, cl),
		publications:  prometheus.NewDesc(p+"_publications_total", "PUBLISH messages the "+title+" received, by topic.", []string{"topic"}, cl),
		events:        prometheus.NewDesc(p+"_events_total", "EVENT messages the "+title+" delivered to subscribers, by topic.", []string{"topic"}, cl),
		subscribers:   prometheus.NewDesc(p+"_subscribers", "Subscriptions of sessions of the "+title+" open now, by topic (or pattern).", []string{"topic"}, cl),
		otherTopics:   prometheus.NewDesc(p+"_other_topics_total", `Publications and events of the `+title+` counted under topic="`+OtherTopic+`" because the maximum number of distinct topics was reached.`, nil, cl),
	}
	if t.callees != nil {
		t.descs.callees = prometheus.NewDesc(p+"_callees", "Registrations of procedures of the "+title+" by sessions open now: the callees a call can go to.", []string{"message"}, cl)
	}
	if err := reg.Register(t); err != nil {
		return nil, fmt.Errorf("register %s traffic metrics: %w", opts.Prefix, err)
	}
	return t, nil
}

// connCounts are the message and byte counts of one connection, or of all
// connections gone.
type connCounts struct {
	received, sent           []atomic.Uint64 // by Traffic.types
	receivedBytes, sentBytes atomic.Uint64
}

func newConnCounts(types int) connCounts {
	return connCounts{received: make([]atomic.Uint64, types), sent: make([]atomic.Uint64, types)}
}

func (c *connCounts) addTo(to *connCounts) {
	for i := range c.received {
		to.received[i].Add(c.received[i].Load())
		to.sent[i].Add(c.sent[i].Load())
	}
	to.receivedBytes.Add(c.receivedBytes.Load())
	to.sentBytes.Add(c.sentBytes.Load())
}

// ConnTraffic counts one connection's messages. Received and Sent are each
// called by one goroutine at a time; everything is safe for concurrent use.
type ConnTraffic struct {
	t      *Traffic
	counts connCounts
	once   sync.Once
}

// Open starts counting a connection. Close it when the connection is gone.
func (t *Traffic) Open() *ConnTraffic {
	c := &ConnTraffic{t: t, counts: newConnCounts(len(t.types))}
	t.mu.Lock()
	t.live[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// Received counts a message of type code, of n bytes, from the client.
func (c *ConnTraffic) Received(code uint8, n int) {
	c.counts.received[c.t.typeIndex[code]].Add(1)
	c.counts.receivedBytes.Add(uint64(n))
}

// Sent counts a message of type code, of n bytes, to the client.
func (c *ConnTraffic) Sent(code uint8, n int) {
	c.counts.sent[c.t.typeIndex[code]].Add(1)
	c.counts.sentBytes.Add(uint64(n))
}

// Close folds the connection's counts into the totals. Counts after Close
// are lost: call it once the connection's goroutines are done.
func (c *ConnTraffic) Close() {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.live, c)
		c.counts.addTo(&c.t.retired)
		c.t.mu.Unlock()
	})
}

// SessionOpened counts a session welcomed.
func (t *Traffic) SessionOpened() { t.opened.Add(1) }

// SessionClosed counts a session that ended for reason, one of
// TrafficOpts.CloseReasons.
func (t *Traffic) SessionClosed(reason string) {
	if i, ok := t.closeIdx[reason]; ok {
		t.closed[i].Add(1)
	}
}

// CallRefused counts a call refused for reason, one of
// TrafficOpts.RefusalReasons.
func (t *Traffic) CallRefused(reason string) {
	if i, ok := t.refusalIdx[reason]; ok {
		t.refused[i].Add(1)
	}
}

// Published counts a PUBLISH to topic.
func (t *Traffic) Published(topic string) {
	s := t.topics.lookup(topic)
	s.publications.Add(1)
	t.topics.used(s)
}

// Event counts an EVENT of topic delivered to a subscriber.
func (t *Traffic) Event(topic string) {
	s := t.topics.lookup(topic)
	s.events.Add(1)
	t.topics.used(s)
}

// Subscribed counts a subscription to topic (a URI or pattern) by a
// session, until the function it returns is called (once).
func (t *Traffic) Subscribed(topic string) (unsubscribed func()) {
	s := t.topics.subscribe(topic)
	return func() {
		s.subscribers.Add(-1)
		t.topics.touch(s)
	}
}

func (t *Traffic) Describe(ch chan<- *prometheus.Desc) {
	d := t.descs
	for _, desc := range []*prometheus.Desc{d.received, d.sent, d.receivedBytes, d.sentBytes, d.opened, d.closed, d.refused,
		d.publications, d.events, d.subscribers, d.otherTopics} {
		ch <- desc
	}
	if d.callees != nil {
		ch <- d.callees
	}
}

func (t *Traffic) Collect(ch chan<- prometheus.Metric) {
	sum := newConnCounts(len(t.types))
	t.mu.Lock()
	t.retired.addTo(&sum)
	for c := range t.live {
		c.counts.addTo(&sum)
	}
	t.mu.Unlock()
	d := t.descs
	for i, name := range t.types {
		ch <- prometheus.MustNewConstMetric(d.received, prometheus.CounterValue, float64(sum.received[i].Load()), name)
		ch <- prometheus.MustNewConstMetric(d.sent, prometheus.CounterValue, float64(sum.sent[i].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(d.receivedBytes, prometheus.CounterValue, float64(sum.receivedBytes.Load()))
	ch <- prometheus.MustNewConstMetric(d.sentBytes, prometheus.CounterValue, float64(sum.sentBytes.Load()))
	ch <- prometheus.MustNewConstMetric(d.opened, prometheus.CounterValue, float64(t.opened.Load()))
	for i, r := range t.closes {
		ch <- prometheus.MustNewConstMetric(d.closed, prometheus.CounterValue, float64(t.closed[i].Load()), r)
	}
	for i, r := range t.refusals {
		ch <- prometheus.MustNewConstMetric(d.refused, prometheus.CounterValue, float64(t.refused[i].Load()), r)
	}
	for _, s := range t.topics.all() {
		ch <- prometheus.MustNewConstMetric(d.publications, prometheus.CounterValue, float64(s.publications.Load()), s.label)
		ch <- prometheus.MustNewConstMetric(d.events, prometheus.CounterValue, float64(s.events.Load()), s.label)
		ch <- prometheus.MustNewConstMetric(d.subscribers, prometheus.GaugeValue, float64(s.subscribers.Load()), s.label)
	}
	ch <- prometheus.MustNewConstMetric(d.otherTopics, prometheus.CounterValue, float64(t.topics.otherUses.Load()))
	if t.callees != nil {
		for _, p := range t.callees.Procedures() {
			if p.s.isOther {
				continue
			}
			ch <- prometheus.MustNewConstMetric(d.callees, prometheus.GaugeValue, float64(p.Registrations), p.Label)
		}
	}
}

// topicSet is the bounded set of topics, like a family's procedures: at
// most max, each at most maxLen bytes; once full, a topic with no
// subscriber and no publication or event for idleAfter gives its place
// to the next new one (at most one reclaim pass a second). Reads are
// lock-free from a copy-on-write map.
type topicSet struct {
	max, maxLen int
	idleAfter   time.Duration
	now         func() time.Time
	epoch       time.Time

	series      atomic.Pointer[map[string]*topicSeries]
	mu          sync.Mutex
	byLabel     map[string]*topicSeries
	other       *topicSeries
	otherUses   atomic.Uint64
	lastReclaim time.Duration
}

type topicSeries struct {
	label                string
	publications, events atomic.Uint64
	subscribers          atomic.Int64
	lastUsed             atomic.Int64 // since epoch, in ns, to the second
	isOther              bool
}

func (ts *topicSet) clock() int64 { return int64(ts.now().Sub(ts.epoch)) }

// used notes a publication or event on s.
func (ts *topicSet) used(s *topicSeries) {
	if s.isOther {
		ts.otherUses.Add(1)
	}
	ts.touch(s)
}

// touch notes a use, writing only when a second has passed (see
// procedureSeries.touch).
func (ts *topicSet) touch(s *topicSeries) {
	if s.isOther {
		return
	}
	if now := ts.clock(); now-s.lastUsed.Load() >= int64(time.Second) {
		s.lastUsed.Store(now)
	}
}

func (ts *topicSet) lookup(topic string) *topicSeries {
	if s, ok := (*ts.series.Load())[topic]; ok {
		return s
	}
	return ts.add(topic)
}

// subscribe counts a subscriber of topic; a series with subscribers keeps
// its place.
func (ts *topicSet) subscribe(topic string) *topicSeries {
	ts.mu.Lock() // subscriptions are rare; under the lock, no reclaim races them
	defer ts.mu.Unlock()
	s := ts.addLocked(topic)
	s.subscribers.Add(1)
	return s
}

func (ts *topicSet) add(topic string) *topicSeries {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.addLocked(topic)
}

func (ts *topicSet) addLocked(topic string) *topicSeries {
	current := *ts.series.Load()
	if s, ok := current[topic]; ok {
		return s
	}
	// Label values must be valid UTF-8; the bound is on the label.
	label := strings.ToValidUTF8(topic, "\uFFFD")
	if topic == "" || len(label) > ts.maxLen || topic == OtherTopic {
		return ts.overflowLocked() // "": the event of a subscription not known
	}
	now := ts.clock()
	if len(current) >= ts.max {
		current = ts.reclaimLocked(current, now)
		if len(current) >= ts.max {
			return ts.overflowLocked()
		}
	}
	s, ok := ts.byLabel[label]
	if !ok {
		s = &topicSeries{label: label}
		s.lastUsed.Store(now)
		if ts.byLabel == nil {
			ts.byLabel = map[string]*topicSeries{}
		}
		ts.byLabel[label] = s
	}
	next := make(map[string]*topicSeries, len(current)+1)
	maps.Copy(next, current)
	next[topic] = s
	ts.series.Store(&next)
	return s
}

func (ts *topicSet) overflowLocked() *topicSeries {
	if ts.other == nil {
		ts.other = &topicSeries{label: OtherTopic, isOther: true}
	}
	return ts.other
}

// reclaimLocked drops idle topics without subscribers. A publication
// racing the reclaim of its topic may count in the series that goes; the
// topic then comes back counting from zero, as any reclaimed one does.
func (ts *topicSet) reclaimLocked(current map[string]*topicSeries, now int64) map[string]*topicSeries {
	if ts.lastReclaim != 0 && now-int64(ts.lastReclaim) < int64(time.Second) {
		return current
	}
	ts.lastReclaim = time.Duration(now)
	gone := false
	for label, s := range ts.byLabel {
		if s.subscribers.Load() == 0 && now-s.lastUsed.Load() >= int64(ts.idleAfter) {
			delete(ts.byLabel, label)
			gone = true
		}
	}
	if !gone {
		return current
	}
	next := make(map[string]*topicSeries, len(current))
	for topic, s := range current {
		if _, kept := ts.byLabel[s.label]; kept {
			next[topic] = s
		}
	}
	ts.series.Store(&next)
	return next
}

// all returns every topic's series, the overflow one included once used.
func (ts *topicSet) all() []*topicSeries {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	all := make([]*topicSeries, 0, len(ts.byLabel)+1)
	for _, s := range ts.byLabel {
		all = append(all, s)
	}
	if ts.other != nil {
		all = append(all, ts.other)
	}
	return all
}
