package wamplog

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// Ingester turns WampObserver log lines into calls on a Tracker, so
// that PHP processes' own view of their calls lands in the same families as
// the router's: <protocol>_<direction>_<outcome>_seconds.
//
// The ingester holds what is shared (the families, the self-metrics); the
// per-sender state lives in Readers, one per reading goroutine, so that
// lines are handled without a lock shared between readers.
type Ingester struct {
	reg           prometheus.Registerer
	tracker       *metrics.Tracker
	maxProcedures int
	maxProcLen    int
	procIdle      time.Duration
	latency       metrics.LatencyExposition
	maxFamilies   int
	maxSenders    int
	idleAfter     time.Duration
	maxTimeout    time.Duration
	log           *ratelog.Logger

	// families is append-only and copied on write: a family's index is
	// stable, and readers look families up without locking.
	familiesMu sync.Mutex
	families   atomic.Pointer[[]*logFamily]
	// lintRefused holds pairs whose names fail the linter, so that each is
	// linted once (see lintFamilyNames). They take no family place, or an
	// attacker could spend all of them; bounded by maxLintRefused.
	// familiesMu.
	lintRefused map[string]struct{}

	// registrationBytes is what all readers' senders charge for the
	// procedure names they remember, against maxAllRegistrationBytes.
	registrationBytes atomic.Int64

	lines    *prometheus.CounterVec
	badLines map[string]prometheus.Counter
	// badLineKinds are the rate-limit kinds of bad lines, one per
	// reason, built once so that a bad line does not allocate one.
	badLineKinds map[string]string
	senders      prometheus.Gauge
	evicted      prometheus.Counter
	dropped      prometheus.Counter
}

type logFamily struct {
	protocol, direction string
	family              *metrics.Family // nil when its names are taken
}

// IngesterOpts configures an Ingester.
type IngesterOpts struct {
	Tracker       *metrics.Tracker
	MaxProcedures int // distinct message values per family
	// MaxProcedureLen, ProcedureIdle and Latency are the families'
	// FamilyOpts.
	MaxProcedureLen int
	ProcedureIdle   time.Duration
	Latency         metrics.LatencyExposition
	// MaxFamilies bounds the protocol/direction pairs, since each makes
	// metric families. Default 16.
	MaxFamilies int
	// MaxSenders bounds the senders one reader tracks at once. Default
	// 10000. A new sender beyond it takes the place of the one seen least
	// recently (see Reader.evictOldest).
	MaxSenders int
	// IdleAfter is how long a sender with no pending call is remembered
	// after its last line. UDP has no close; this is it. Default 1m.
	IdleAfter time.Duration
	// MaxTimeout bounds the timeout a line may ask for (a CALL's timeout
	// option, an INVOCATION's forwarded one): a sender that went away must
	// not pin its calls, and itself, for longer. Default
	// DefaultMaxTimeout.
	MaxTimeout time.Duration
	Logger     *slog.Logger
}

// DefaultMaxTimeout is IngesterOpts.MaxTimeout's default.
const DefaultMaxTimeout = time.Minute

// NewIngester creates an Ingester and registers its self-metrics.
func NewIngester(reg prometheus.Registerer, opts IngesterOpts) (*Ingester, error) {
	if opts.MaxFamilies == 0 {
		opts.MaxFamilies = 16
	}
	if opts.MaxSenders == 0 {
		opts.MaxSenders = 10000
	}
	if opts.IdleAfter == 0 {
		opts.IdleAfter = time.Minute
	}
	if opts.MaxTimeout == 0 {
		opts.MaxTimeout = DefaultMaxTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	in := &Ingester{
		reg:           reg,
		tracker:       opts.Tracker,
		maxProcedures: opts.MaxProcedures,
		maxProcLen:    opts.MaxProcedureLen,
		procIdle:      opts.ProcedureIdle,
		latency:       opts.Latency,
		maxFamilies:   opts.MaxFamilies,
		maxSenders:    opts.MaxSenders,
		idleAfter:     opts.IdleAfter,
		maxTimeout:    opts.MaxTimeout,
		log:           ratelog.New(opts.Logger, time.Second, nil),
		badLines:      map[string]prometheus.Counter{},
		lintRefused:   map[string]struct{}{},
	}
	in.families.Store(&[]*logFamily{})
	in.lines = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wamp_observer_log_lines_total",
		Help: "Log lines received from WampObserver, by transport.",
	}, []string{"transport"})
	bad := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wamp_observer_log_bad_lines_total",
		Help: "Log lines rejected, by reason.",
	}, []string{"reason"})
	in.badLineKinds = map[string]string{}
	for _, r := range BadLineReasons() {
		in.badLines[r] = bad.WithLabelValues(r)
		in.badLineKinds[r] = "bad log line: " + r
	}
	in.senders = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "wamp_observer_log_senders",
		Help: "Log senders (UDP source addresses, TCP connections) currently tracked.",
	})
	in.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wamp_observer_log_senders_evicted_total",
		Help: "Log senders forgotten to make room for a new one, the least recently seen first, while a reader tracked the maximum.",
	})
	in.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wamp_observer_log_calls_dropped_total",
		Help: "Calls of evicted log senders dropped without an outcome, as their deadline had not passed.",
	})
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wamp_observer_log_calls_pending",
		Help: "Calls from log lines waiting for their answer or deadline, over all log families.",
	}, in.pendingCalls)
	for _, c := range []prometheus.Collector{in.lines, bad, in.senders, in.evicted, in.dropped, pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register log ingestion metrics: %w", err)
		}
	}
	return in, nil
}

func (in *Ingester) pendingCalls() float64 {
	var n int64
	for _, f := range *in.families.Load() {
		if f.family != nil {
			n += f.family.Pending()
		}
	}
	return float64(n)
}

// family returns the index of the family for protocol/direction, creating
// and registering it on first sight while the bound allows.
func (in *Ingester) family(protocol, direction []byte) (int, string) {
	for i, f := range *in.families.Load() {
		if f.protocol == string(protocol) && f.direction == string(direction) {
			if f.family == nil {
				return 0, ReasonFamilyConflict
			}
			return i, ""
		}
	}
	in.familiesMu.Lock()
	defer in.familiesMu.Unlock()
	current := *in.families.Load()
	for i, f := range current { // another reader may have added it
		if f.protocol == string(protocol) && f.direction == string(direction) {
			if f.family == nil {
				return 0, ReasonFamilyConflict
			}
			return i, ""
		}
	}
	prefix := string(protocol) + "_" + string(direction)
	if _, refused := in.lintRefused[prefix]; refused {
		return 0, ReasonLintName
	}
	if len(current) >= in.maxFamilies {
		return 0, ReasonTooManyFamilies
	}
	if err := lintFamilyNames(prefix); err != nil {
		if len(in.lintRefused) >= maxLintRefused {
			clear(in.lintRefused) // then each is linted once more
		}
		in.lintRefused[prefix] = struct{}{}
		in.log.Warn("log family refused", slog.String("prefix", prefix), slog.Any("err", err))
		return 0, ReasonLintName
	}
	lf := &logFamily{protocol: string(protocol), direction: string(direction)}
	fam, err := metrics.NewFamily(in.reg, metrics.FamilyOpts{
		Prefix: lf.protocol + "_" + lf.direction, MaxProcedures: in.maxProcedures,
		MaxProcedureLen: in.maxProcLen, ProcedureIdle: in.procIdle, Latency: in.latency,
	})
	if err != nil {
		// The names are taken, e.g. wamp/router. Remember the pair, so
		// that its lines are refused without another attempt.
		in.log.Warn("log family refused", slog.String("prefix", lf.protocol+"_"+lf.direction), slog.Any("err", err))
	}
	lf.family = fam
	next := append(append(make([]*logFamily, 0, len(current)+1), current...), lf)
	in.families.Store(&next)
	if fam == nil {
		return 0, ReasonFamilyConflict
	}
	return len(next) - 1, ""
}

// maxLintRefused bounds the remembered pairs whose names fail the linter:
// at most 256 × 66 bytes of names.
const maxLintRefused = 256

// lintFamilyNames checks the names of a family with prefix against
// Prometheus's own linter (promlint, as promtool check metrics runs it),
// so that no protocol/direction pair a log sender picks can break the
// scrape's lint, and the rule cannot drift from the linter's: e.g. "ms" in
// php_ms_responses_seconds is an abbreviated unit. It builds the family in
// a throwaway registry, with one series so that every name is exposed. It
// runs once per new pair (tens of microseconds), never per line.
func lintFamilyNames(prefix string) error {
	reg := prometheus.NewRegistry()
	f, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: prefix, MaxProcedures: 1, Latency: metrics.LatencyBoth})
	if err != nil {
		return err
	}
	f.Declare("lint", 0)
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("metric names fail the linter: %s: %s", problems[0].Metric, problems[0].Text)
	}
	return nil
}

// Families returns the families log lines created so far, in the order
// they were created: for the final counts the program logs on its way out.
func (in *Ingester) Families() []*metrics.Family {
	var fs []*metrics.Family
	for _, f := range *in.families.Load() {
		if f.family != nil {
			fs = append(fs, f.family)
		}
	}
	return fs
}

// familyAt returns the family at index fi, which family() handed out.
func (in *Ingester) familyAt(fi int) *metrics.Family { return (*in.families.Load())[fi].family }

// NewReader returns the state for one reading goroutine; transport labels
// its lines ("udp", "tcp").
func (in *Ingester) NewReader(transport string) *Reader {
	r := &Reader{
		in:      in,
		parser:  newLineParser(),
		lines:   in.lines.WithLabelValues(transport),
		senders: make(map[netip.AddrPort]*logSender),
	}
	r.recent.newer, r.recent.older = &r.recent, &r.recent
	return r
}

// Reader handles the lines of one reading goroutine: one UDP socket, or
// one TCP connection. It owns its senders' state; not safe for concurrent
// use.
type Reader struct {
	in      *Ingester
	parser  *lineParser
	line    logLine
	lines   prometheus.Counter
	senders map[netip.AddrPort]*logSender
	// recent is the sentinel of a ring of the senders by their last
	// line: recent.older is the latest, recent.newer the one seen least
	// recently. Moving a sender to the front costs a few pointer writes,
	// so eviction and ForgetIdle never scan the whole table.
	recent logSender
}

// logSender is one PHP process as seen by its lines: its sessions (per
// family and view) and the registrations it announced.
type logSender struct {
	from         netip.AddrPort
	lastSeen     int64
	newer, older *logSender            // in Reader.recent
	sessions     [][2]*metrics.Session // [family index][view]
	// Registrations learnt from REGISTER/REGISTERED lines, for INVOCATION
	// lines that do not carry details.procedure. Bounded in bytes (see
	// remember): regBytes is what they are charged.
	registering   map[uint64]string
	registrations map[uint64]string
	regBytes      int64

	clock senderClock // for lines that carry the sender's time
}

// senderClock maps a sender's monotonic clock (the time a batching class
// puts in each line) onto the tracker's. Lines wait in the sender's batch,
// on the network and in our queue, so their arrival says little about when
// they were logged; a line is placed at sent + offset instead, where the
// offset is arrival − sent of the sender's first timed line, which our class
// sends at once (at start, after a fork or an outage), so that its delay is
// the network's alone. On one host PHP's hrtime and our clock read the same
// CLOCK_MONOTONIC, so the offset stays right: durations are exact
// differences of the sender's clock. A line is never placed before the
// sender's previous line (a hostile or reordered sender cannot make a
// duration negative), and one that would be placed more than maxAhead after
// its arrival sets the offset anew (a sender whose clock jumped, or lies).
type senderClock struct {
	offset, last int64
	set          bool
}

// maxAhead is how far after its arrival a line may be placed: its sender's
// first line was delayed by about that much more than this one.
const maxAhead = int64(time.Second)

// at is the tracker time of a line sent at sent (the sender's clock) that
// arrived at arrival (Tracker.Now).
func (c *senderClock) at(sent, arrival int64) int64 {
	d := arrival - sent
	if !c.set || d < c.offset-maxAhead {
		c.offset = d
	}
	t := sent + c.offset
	if c.set && t < c.last {
		t = c.last
	}
	c.set, c.last = true, t
	return t
}

// The procedure names a sender's REGISTER and REGISTERED lines teach are
// bounded in bytes, per sender and over all senders, so that long names
// cannot hold memory (1,024 REGISTERs of 60 KB held 63 MiB per sender):
//
//   - a name longer than maxRememberedProcedure is not remembered;
//   - each remembered name is charged its length plus registrationOverhead
//     (its map entry and string header, rounded up), against
//     maxRegistrationBytes per sender (so at most 1,024 entries) and
//     maxAllRegistrationBytes over all readers of an ingester.
//
// A registration not remembered costs only this: an INVOCATION line for it
// without details.procedure is counted as no_procedure. (Routers send
// details.procedure for pattern registrations; PHP's own lines of exact
// registrations are what needs the memory.) The charge is given back when
// the entry is overwritten or moves on, and when the sender is forgotten.
const (
	maxRememberedProcedure  = 1 << 10
	registrationOverhead    = 64
	maxRegistrationBytes    = 64 << 10
	maxAllRegistrationBytes = 32 << 20
)

// HandleLine ingests one line (without its newline) from sender. A bad line
// is counted by reason, logged at most once a second, and otherwise
// ignored.
func (r *Reader) HandleLine(from netip.AddrPort, line []byte) {
	r.handleLine(r.in.tracker.Now(), from, line)
}

// handleLine is HandleLine with the clock read by the caller: the lines of
// one read arrived together.
func (r *Reader) handleLine(now int64, from netip.AddrPort, line []byte) {
	r.lines.Inc()
	l := &r.line
	if reason := r.parser.parse(line, l); reason != "" {
		r.reject(reason, from, line)
		return
	}
	ignored := l.kind == kindIgnored
	if ignored && !l.hasSent {
		return
	}
	fi := 0
	if !ignored {
		var reason string
		if fi, reason = r.in.family(l.protocol, l.direction); reason != "" {
			r.reject(reason, from, line)
			return
		}
	}
	snd := r.senders[from]
	if snd == nil {
		if len(r.senders) >= r.in.maxSenders {
			r.evictOldest(now)
		}
		snd = &logSender{from: from}
		r.senders[from] = snd
		r.in.senders.Inc()
		r.linkNewest(snd)
	} else if r.recent.older != snd {
		r.unlink(snd)
		r.linkNewest(snd)
	}
	snd.lastSeen = now
	timeout := min(l.timeout, r.in.maxTimeout)
	at := now // when the line was logged, for its calls
	if l.hasSent {
		at = snd.clock.at(l.sent, now) // not when it came
	}
	if ignored {
		// A timed HELLO, say: the first line of a process, sent at once,
		// which sets the sender's clock offset (see senderClock).
		return
	}

	switch l.kind {
	case kindCall:
		// A CALL's timeout option is the dealer's to enforce, as for the
		// router (Session.Call); v1 calls have none.
		r.session(snd, fi, l.view).StartAt(at, l.id, l.procedure, timeout)
	case kindInvocation:
		procedure := l.procedure
		if len(procedure) == 0 {
			p, ok := snd.registrations[l.registration]
			if !ok {
				r.reject(ReasonNoProcedure, from, line)
				return
			}
			procedure = []byte(p)
		}
		// The callee's view is what the callee did and was sent: its
		// YIELD or ERROR, or the dealer's INTERRUPT when the caller's
		// timeout passed (the callee is not told that timeout, unless
		// forwarded). Its own deadline, the forwarded timeout or the
		// default, is then only a backstop, DealerBackstop later, as for
		// a CALL with a timeout option.
		if timeout <= 0 {
			timeout = r.in.tracker.DefaultTimeout()
		}
		r.session(snd, fi, l.view).StartAt(at, l.id, procedure, timeout)
	case kindResult, kindYield:
		if s := existing(snd, fi, l.view); s != nil {
			s.EndAt(at, l.id, metrics.Response)
		}
	case kindError:
		if s := existing(snd, fi, l.view); s != nil {
			s.ErrorAt(at, l.id, l.errorURI)
		}
	case kindInterrupt:
		// The dealer interrupts the callee when the call timed out or the
		// caller canceled; the router counts those as a timeout and an
		// error, and so does the callee's view.
		if s := existing(snd, fi, l.view); s != nil {
			s.EndAt(at, l.id, metrics.ErrorOutcome(l.errorURI))
		}
	case kindRegister:
		r.forgetRegistration(snd, snd.registering, l.id)
		if r.charge(snd, len(l.procedure)) {
			if snd.registering == nil {
				snd.registering = make(map[uint64]string)
			}
			snd.registering[l.id] = string(l.procedure)
		}
	case kindRegistered:
		p, ok := snd.registering[l.id]
		if !ok {
			return
		}
		delete(snd.registering, l.id) // its charge moves with it
		r.forgetRegistration(snd, snd.registrations, l.registration)
		if snd.registrations == nil {
			snd.registrations = make(map[uint64]string)
		}
		snd.registrations[l.registration] = p
		r.in.familyAt(fi).Declare(p, at)
	}
}

// charge takes the place for remembering a procedure name of n bytes, if
// the bounds allow (see maxRegistrationBytes).
func (r *Reader) charge(snd *logSender, n int) bool {
	if n > maxRememberedProcedure {
		return false
	}
	c := int64(n + registrationOverhead)
	if snd.regBytes+c > maxRegistrationBytes {
		return false
	}
	if r.in.registrationBytes.Add(c) > maxAllRegistrationBytes {
		r.in.registrationBytes.Add(-c)
		return false
	}
	snd.regBytes += c
	return true
}

// forgetRegistration deletes m[id], if there, and gives its charge back.
func (r *Reader) forgetRegistration(snd *logSender, m map[uint64]string, id uint64) {
	p, ok := m[id]
	if !ok {
		return
	}
	delete(m, id)
	c := int64(len(p) + registrationOverhead)
	snd.regBytes -= c
	r.in.registrationBytes.Add(-c)
}

func (r *Reader) reject(reason string, from netip.AddrPort, line []byte) {
	r.in.badLines[reason].Inc()
	const maxShown = 200
	shown := line
	if len(shown) > maxShown {
		shown = shown[:maxShown]
	}
	// Each reason is a kind of its own for the rate limit.
	r.in.log.Log(slog.LevelWarn, r.in.badLineKinds[reason], "bad log line", slog.String("reason", reason), slog.String("from", from.String()),
		slog.Int("bytes", len(line)), slog.String("line", fmt.Sprintf("%q", shown)))
}

// Close logs what the rate limit on bad-line logs still holds back. Call
// it once the readers have stopped.
func (in *Ingester) Close() { in.log.Close() }

// RejectEmpty counts a datagram that held no line.
func (r *Reader) RejectEmpty(from netip.AddrPort) {
	r.reject(ReasonEmpty, from, nil)
}

// RejectTooLong counts a line cut off at the maximum length.
func (r *Reader) RejectTooLong(from netip.AddrPort, head []byte) {
	r.lines.Inc()
	r.reject(ReasonTooLong, from, head)
}

func (r *Reader) session(snd *logSender, fi int, v view) *metrics.Session {
	for len(snd.sessions) <= fi {
		snd.sessions = append(snd.sessions, [2]*metrics.Session{})
	}
	s := snd.sessions[fi][v]
	if s == nil {
		s = r.in.tracker.Open(r.in.familyAt(fi))
		snd.sessions[fi][v] = s
	}
	return s
}

func existing(snd *logSender, fi int, v view) *metrics.Session {
	if fi >= len(snd.sessions) {
		return nil
	}
	return snd.sessions[fi][v]
}

// ForgetIdle drops senders with no pending call whose last line is older
// than the ingester's IdleAfter. UDP senders never say goodbye. It walks
// from the sender seen least recently and stops at the first one seen
// since the cutoff: its cost is the idle senders', not the table's.
func (r *Reader) ForgetIdle() {
	cutoff := r.in.tracker.Now() - int64(r.in.idleAfter)
	for snd := r.recent.newer; snd != &r.recent && snd.lastSeen < cutoff; {
		older := snd.older
		if !snd.hasPending() {
			r.drop(snd)
		}
		snd = older
	}
}

// evictOldest makes room for a new sender by forgetting the one seen least
// recently, so that senders that went quiet (a UDP sender has no close)
// never lock new ones out: before, 10,000 source addresses with one
// long-pending call each took every place for good. The rule never records
// a wrong outcome. The evicted sender's calls whose deadline has passed are
// timeouts, as any answer to them would now be; the others are dropped
// without an outcome and counted in wamp_observer_log_calls_dropped_total,
// as those of a WAMP caller that left (Session.Close): an answer may still
// be logged, and it would then find no call, so recording them as timeouts
// (Session.Abandon) could be wrong. As the timeout a line may ask for is
// capped (MaxTimeout), a sender silent for longer than that plus
// DealerBackstop loses no call to eviction.
func (r *Reader) evictOldest(now int64) {
	snd := r.recent.newer
	if snd == &r.recent {
		return
	}
	var dropped int
	for _, views := range snd.sessions {
		for _, s := range views {
			if s != nil {
				dropped += s.CloseAt(now)
			}
		}
	}
	snd.sessions = nil // drop does not abandon them again
	r.in.dropped.Add(float64(dropped))
	r.in.evicted.Inc()
	r.drop(snd)
}

func (r *Reader) linkNewest(snd *logSender) {
	snd.newer, snd.older = &r.recent, r.recent.older
	r.recent.older.newer = snd
	r.recent.older = snd
}

func (r *Reader) unlink(snd *logSender) {
	snd.newer.older = snd.older
	snd.older.newer = snd.newer
	snd.newer, snd.older = nil, nil
}

func (snd *logSender) hasPending() bool {
	for _, views := range snd.sessions {
		for _, s := range views {
			if s != nil && s.Pending() > 0 {
				return true
			}
		}
	}
	return false
}

// drop forgets a sender. Its pending calls, whose answers can no longer
// arrive on this reader, end as timeouts at their deadlines, as in the
// original tool: the PHP process made those calls and never logged an
// answer. (A sender forgotten for being idle has none.)
func (r *Reader) drop(snd *logSender) {
	for _, views := range snd.sessions {
		for _, s := range views {
			if s != nil {
				s.Abandon()
			}
		}
	}
	r.in.registrationBytes.Add(-snd.regBytes)
	snd.regBytes = 0
	r.unlink(snd)
	delete(r.senders, snd.from)
	r.in.senders.Dec()
}

// Close forgets every sender (see drop): for a TCP reader, the connection
// that was the sender has closed.
func (r *Reader) Close() {
	for _, snd := range r.senders {
		r.drop(snd)
	}
}

// LineTotals are the log lines received over both transports, and those
// rejected, as wamp_observer_log_lines_total and
// wamp_observer_log_bad_lines_total count them: for the live page.
func (in *Ingester) LineTotals() (lines, bad uint64) {
	var m dto.Metric
	for _, transport := range []string{"udp", "tcp"} {
		m.Reset()
		if in.lines.WithLabelValues(transport).Write(&m) == nil {
			lines += uint64(m.GetCounter().GetValue())
		}
	}
	for _, c := range in.badLines {
		m.Reset()
		if c.Write(&m) == nil {
			bad += uint64(m.GetCounter().GetValue())
		}
	}
	return lines, bad
}
