package live

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// Snapshot is what the page shows, as /ui/data.json serves it.
type Snapshot struct {
	Time          time.Time `json:"time"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Sessions      int64     `json:"sessions"`
	CallsInFlight int64     `json:"calls_in_flight"`
	// Calls is every call the router has seen end since it started: 0
	// means no traffic yet.
	Calls uint64    `json:"calls"`
	Log   *LogStats `json:"log"` // null without a log path
	Rows  []Row     `json:"rows"`
}

// LogStats is the log path's health.
type LogStats struct {
	LinesPerSecond float64 `json:"lines_per_second"` // over the last 10 s
	BadLines       uint64  `json:"bad_lines"`
	UDPKernelDrops *uint64 `json:"udp_kernel_drops"` // null where the kernel does not say
}

// Row is one procedure as each view measured it; a view without the
// procedure is null.
type Row struct {
	Procedure string   `json:"procedure"`
	Router    *Measure `json:"router"`
	Caller    *Measure `json:"caller"`
	Callee    *Measure `json:"callee"`
}

// Measure is one view of one procedure.
type Measure struct {
	// CallsPerSecond: calls ended (any outcome) over the last 10 s.
	CallsPerSecond float64 `json:"calls_per_second"`
	// P50, P95, P99 of the calls answered with a result over the last
	// 60–70 s, in milliseconds, within 9.05% (one bucket); null with none.
	P50 *float64 `json:"p50_ms"`
	P95 *float64 `json:"p95_ms"`
	P99 *float64 `json:"p99_ms"`
	// ErrorPercent and TimeoutPercent of the calls ended over the last
	// 60–69 s (Calls of them).
	ErrorPercent   float64 `json:"error_percent"`
	TimeoutPercent float64 `json:"timeout_percent"`
	Calls          uint64  `json:"calls_last_minute"`
	// Spark is calls/s in 10 s steps over the last 5 minutes, oldest first.
	Spark []float64 `json:"spark"`
}

// Snapshot builds what the page shows from the history kept.
func (s *Sampler) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

// JSON is the Snapshot encoded, built at most once per sample however many
// pages poll it.
func (s *Sampler) JSON() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil {
		return s.cached, nil
	}
	b, err := json.Marshal(s.snapshotLocked())
	if err != nil {
		return nil, err
	}
	s.cached = b
	return b, nil
}

func (s *Sampler) snapshotLocked() Snapshot {
	now := s.now()
	n := s.tick
	snap := Snapshot{Time: now.UTC(), UptimeSeconds: now.Sub(s.started).Seconds(), Rows: []Row{}}
	if s.src.Sessions != nil {
		snap.Sessions = s.src.Sessions()
	}
	if s.src.InFlight != nil {
		snap.CallsInFlight = s.src.InFlight()
	}
	if s.hasLog {
		cur, old := s.lines[at(n, secondsKept)], s.lines[at(n-rateWindow, secondsKept)]
		ls := &LogStats{LinesPerSecond: float64(cur[0]-old[0]) / rateWindow, BadLines: cur[1]}
		if s.src.UDPDrops != nil {
			if d, ok := s.src.UDPDrops(); ok {
				ls.UDPKernelDrops = &d
			}
		}
		snap.Log = ls
	}
	byLabel := map[string]*Row{}
	var latest metrics.Latency
	for k, h := range s.rows {
		row := byLabel[k.label]
		if row == nil {
			row = &Row{Procedure: k.label}
			byLabel[k.label] = row
		}
		m := s.measure(h, n, &latest)
		switch k.view {
		case Router:
			row.Router = m
			snap.Calls += h.seconds[at(n, secondsKept)].total()
		case Caller:
			row.Caller = m
		case Callee:
			row.Callee = m
		}
	}
	for _, r := range byLabel {
		snap.Rows = append(snap.Rows, *r)
	}
	sort.Slice(snap.Rows, func(i, j int) bool { return snap.Rows[i].Procedure < snap.Rows[j].Procedure })
	return snap
}

// at is the index of tick t in a ring of size n; t may be negative.
func at(t int64, n int) int { return int(((t % int64(n)) + int64(n)) % int64(n)) }

// measure computes one view of one procedure at tick n; latest is scratch.
func (s *Sampler) measure(h *history, n int64, latest *metrics.Latency) *Measure {
	cur := h.seconds[at(n, secondsKept)]
	m := &Measure{Spark: make([]float64, sparkPoints)}

	if span := min(int64(rateWindow), n-h.since); span > 0 {
		m.CallsPerSecond = float64(cur.total()-h.seconds[at(n-span, secondsKept)].total()) / float64(span)
	}

	step := n / sparkStep
	// The ten-second sample 6 steps back: 60–69 s ago, or the first one.
	back := max(step-ratioWindow/sparkStep, h.since/sparkStep)
	old := h.steps[at(back, stepsKept)]
	if ended := cur.total() - old.total(); ended > 0 {
		m.Calls = ended
		m.ErrorPercent = 100 * float64(cur[metrics.Error]-old[metrics.Error]) / float64(ended)
		m.TimeoutPercent = 100 * float64(cur[metrics.Timeout]-old[metrics.Timeout]) / float64(ended)
	}

	for i := range sparkPoints {
		from, to := h.steps[at(step-sparkPoints+int64(i), stepsKept)], h.steps[at(step-sparkPoints+int64(i)+1, stepsKept)]
		m.Spark[i] = float64(to.total()-from.total()) / sparkStep
	}

	h.proc.ReadLatency(metrics.Response, latest)
	// The oldest copy that is still inside the window, taken after the
	// history began; none yet: since the start.
	for j := step - latencyWindow/sparkStep; j <= step; j++ {
		if j*sparkStep < h.since {
			continue
		}
		if snap := h.snaps[at(j, latencySnaps)]; snap != nil && j < step {
			latest.Sub(snap)
		}
		break
	}
	if latest.Count > 0 {
		ms := func(q float64) *float64 {
			v := float64(latest.Quantile(q)) / float64(time.Millisecond)
			return &v
		}
		m.P50, m.P95, m.P99 = ms(0.5), ms(0.95), ms(0.99)
	}
	return m
}
