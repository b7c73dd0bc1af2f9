package metrics

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// LogIngester turns WampObserver log lines into calls on a Tracker, so
// that PHP processes' own view of their calls lands in the same families as
// the router's: <protocol>_<direction>_<outcome>_seconds.
//
// The ingester holds what is shared (the families, the self-metrics); the
// per-sender state lives in LogReaders, one per reading goroutine, so that
// lines are handled without a lock shared between readers.
type LogIngester struct {
	reg           prometheus.Registerer
	tracker       *Tracker
	maxProcedures int
	maxProcLen    int
	procIdle      time.Duration
	maxFamilies   int
	maxSenders    int
	idleAfter     time.Duration
	maxTimeout    time.Duration
	log           *ratelog.Logger

	// families is append-only and copied on write: a family's index is
	// stable, and readers look families up without locking.
	familiesMu sync.Mutex
	families   atomic.Pointer[[]*logFamily]

	lines    *prometheus.CounterVec
	badLines map[string]prometheus.Counter
	// badLineKinds are the rate-limit kinds of bad lines, one per
	// reason, built once so that a bad line does not allocate one.
	badLineKinds map[string]string
	senders      prometheus.Gauge
}

type logFamily struct {
	protocol, direction string
	family              *Family // nil when its names are taken
}

// LogIngesterOpts configures a LogIngester.
type LogIngesterOpts struct {
	Tracker       *Tracker
	MaxProcedures int // distinct message values per family
	// MaxProcedureLen and ProcedureIdle are the families' FamilyOpts.
	MaxProcedureLen int
	ProcedureIdle   time.Duration
	// MaxFamilies bounds the protocol/direction pairs, since each makes
	// metric families. Default 16.
	MaxFamilies int
	// MaxSenders bounds the senders one reader tracks at once. Default 10000.
	MaxSenders int
	// IdleAfter is how long a sender with no pending call is remembered
	// after its last line. UDP has no close; this is it. Default 1m.
	IdleAfter time.Duration
	// MaxTimeout bounds the timeout a line may ask for (a CALL's timeout
	// option, an INVOCATION's forwarded one): a sender that went away must
	// not pin its calls, and itself, for longer. Default
	// DefaultMaxLogTimeout.
	MaxTimeout time.Duration
	Logger     *slog.Logger
}

// DefaultMaxLogTimeout is LogIngesterOpts.MaxTimeout's default.
const DefaultMaxLogTimeout = time.Minute

// NewLogIngester creates a LogIngester and registers its self-metrics.
func NewLogIngester(reg prometheus.Registerer, opts LogIngesterOpts) (*LogIngester, error) {
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
		opts.MaxTimeout = DefaultMaxLogTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	in := &LogIngester{
		reg:           reg,
		tracker:       opts.Tracker,
		maxProcedures: opts.MaxProcedures,
		maxProcLen:    opts.MaxProcedureLen,
		procIdle:      opts.ProcedureIdle,
		maxFamilies:   opts.MaxFamilies,
		maxSenders:    opts.MaxSenders,
		idleAfter:     opts.IdleAfter,
		maxTimeout:    opts.MaxTimeout,
		log:           ratelog.New(opts.Logger, time.Second, nil),
		badLines:      map[string]prometheus.Counter{},
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
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wamp_observer_log_calls_pending",
		Help: "Calls from log lines waiting for their answer or deadline, over all log families.",
	}, in.pendingCalls)
	for _, c := range []prometheus.Collector{in.lines, bad, in.senders, pending} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register log ingestion metrics: %w", err)
		}
	}
	return in, nil
}

func (in *LogIngester) pendingCalls() float64 {
	var n int64
	for _, f := range *in.families.Load() {
		if f.family != nil {
			n += f.family.pending.Load()
		}
	}
	return float64(n)
}

// family returns the index of the family for protocol/direction, creating
// and registering it on first sight while the bound allows.
func (in *LogIngester) family(protocol, direction []byte) (int, string) {
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
	if len(current) >= in.maxFamilies {
		return 0, ReasonTooManyFamilies
	}
	lf := &logFamily{protocol: string(protocol), direction: string(direction)}
	fam, err := NewFamily(in.reg, FamilyOpts{
		Prefix: lf.protocol + "_" + lf.direction, MaxProcedures: in.maxProcedures,
		MaxProcedureLen: in.maxProcLen, ProcedureIdle: in.procIdle,
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

// familyAt returns the family at index fi, which family() handed out.
func (in *LogIngester) familyAt(fi int) *Family { return (*in.families.Load())[fi].family }

// NewReader returns the state for one reading goroutine; transport labels
// its lines ("udp", "tcp").
func (in *LogIngester) NewReader(transport string) *LogReader {
	return &LogReader{
		in:      in,
		parser:  newLineParser(),
		lines:   in.lines.WithLabelValues(transport),
		senders: make(map[netip.AddrPort]*logSender),
	}
}

// LogReader handles the lines of one reading goroutine: one UDP socket, or
// one TCP connection. It owns its senders' state; not safe for concurrent
// use.
type LogReader struct {
	in      *LogIngester
	parser  *lineParser
	line    logLine
	lines   prometheus.Counter
	senders map[netip.AddrPort]*logSender
}

// logSender is one PHP process as seen by its lines: its sessions (per
// family and view) and the registrations it announced.
type logSender struct {
	lastSeen int64
	sessions [][2]*Session // [family index][view]
	// Registrations learnt from REGISTER/REGISTERED lines, for INVOCATION
	// lines that do not carry details.procedure. Bounded.
	registering   map[uint64]string
	registrations map[uint64]string
}

// maxRegistrations bounds the registrations remembered per sender.
const maxRegistrations = 1024

// HandleLine ingests one line (without its newline) from sender. A bad line
// is counted by reason, logged at most once a second, and otherwise
// ignored.
func (r *LogReader) HandleLine(from netip.AddrPort, line []byte) {
	r.handleLine(r.in.tracker.nanos(), from, line)
}

// handleLine is HandleLine with the clock read by the caller: the lines of
// one read arrived together.
func (r *LogReader) handleLine(now int64, from netip.AddrPort, line []byte) {
	r.lines.Inc()
	l := &r.line
	if reason := r.parser.parse(line, l); reason != "" {
		r.reject(reason, from, line)
		return
	}
	if l.kind == kindIgnored {
		return
	}
	fi, reason := r.in.family(l.protocol, l.direction)
	if reason != "" {
		r.reject(reason, from, line)
		return
	}
	snd := r.senders[from]
	if snd == nil {
		if len(r.senders) >= r.in.maxSenders {
			r.reject(ReasonTooManySenders, from, line)
			return
		}
		snd = &logSender{}
		r.senders[from] = snd
		r.in.senders.Inc()
	}
	snd.lastSeen = now
	timeout := min(l.timeout, r.in.maxTimeout)

	switch l.kind {
	case kindCall:
		// A CALL's timeout option is the dealer's to enforce, as for the
		// router (Session.Call); v1 calls have none.
		r.session(snd, fi, l.view).startAt(now, l.id, r.in.familyAt(fi).acquireBytes(l.procedure, now), timeout, true)
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
		// An INVOCATION's timeout (forward_timeout) is the callee's own
		// deadline: past it, the callee's view has a timeout.
		r.session(snd, fi, l.view).startAt(now, l.id, r.in.familyAt(fi).acquireBytes(procedure, now), timeout, false)
	case kindResult, kindYield:
		if s := existing(snd, fi, l.view); s != nil {
			s.endAt(now, l.id, Response)
		}
	case kindError:
		if s := existing(snd, fi, l.view); s != nil {
			s.endAt(now, l.id, errorOutcome(l.errorURI))
		}
	case kindInterrupt:
		// The dealer interrupts the callee when the call timed out or the
		// caller canceled; the router counts those as a timeout and an
		// error, and so does the callee's view.
		if s := existing(snd, fi, l.view); s != nil {
			s.endAt(now, l.id, errorOutcome(l.errorURI))
		}
	case kindRegister:
		if snd.registering == nil {
			snd.registering = make(map[uint64]string)
		}
		if len(snd.registering) < maxRegistrations {
			snd.registering[l.id] = string(l.procedure)
		}
	case kindRegistered:
		p, ok := snd.registering[l.id]
		if !ok {
			return
		}
		delete(snd.registering, l.id)
		if snd.registrations == nil {
			snd.registrations = make(map[uint64]string)
		}
		if len(snd.registrations) < maxRegistrations {
			snd.registrations[l.registration] = p
		}
		r.in.familyAt(fi).Declare(p, now)
	}
}

func (r *LogReader) reject(reason string, from netip.AddrPort, line []byte) {
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
func (in *LogIngester) Close() { in.log.Close() }

// RejectEmpty counts a datagram that held no line.
func (r *LogReader) RejectEmpty(from netip.AddrPort) {
	r.reject(ReasonEmpty, from, nil)
}

// RejectTooLong counts a line cut off at the maximum length.
func (r *LogReader) RejectTooLong(from netip.AddrPort, head []byte) {
	r.lines.Inc()
	r.reject(ReasonTooLong, from, head)
}

func (r *LogReader) session(snd *logSender, fi int, v view) *Session {
	for len(snd.sessions) <= fi {
		snd.sessions = append(snd.sessions, [2]*Session{})
	}
	s := snd.sessions[fi][v]
	if s == nil {
		s = r.in.tracker.Open(r.in.familyAt(fi))
		snd.sessions[fi][v] = s
	}
	return s
}

func existing(snd *logSender, fi int, v view) *Session {
	if fi >= len(snd.sessions) {
		return nil
	}
	return snd.sessions[fi][v]
}

// ForgetIdle drops senders with no pending call whose last line is older
// than the ingester's IdleAfter. UDP senders never say goodbye.
func (r *LogReader) ForgetIdle() {
	cutoff := r.in.tracker.nanos() - int64(r.in.idleAfter)
	for from, snd := range r.senders {
		if snd.lastSeen < cutoff && !snd.hasPending() {
			r.drop(from, snd)
		}
	}
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
func (r *LogReader) drop(from netip.AddrPort, snd *logSender) {
	for _, views := range snd.sessions {
		for _, s := range views {
			if s != nil {
				s.Abandon()
			}
		}
	}
	delete(r.senders, from)
	r.in.senders.Dec()
}

// Close forgets every sender (see drop): for a TCP reader, the connection
// that was the sender has closed.
func (r *LogReader) Close() {
	for from, snd := range r.senders {
		r.drop(from, snd)
	}
}
