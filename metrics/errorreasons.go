package metrics

import (
	"maps"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// OtherError is the error label value under which ERROR answers are
// counted once a family counts its maximum number of distinct error URIs
// or series, and for a URI that is empty or longer than the longest label
// value. Like OtherProcedure it has spaces, so no valid URI has it.
const OtherError = "(other errors)"

// DefaultMaxErrorURIs and DefaultMaxErrorSeries are the defaults of
// FamilyOpts.MaxErrorURIs and MaxErrorSeries: applications use a handful of
// error URIs each.
const (
	DefaultMaxErrorURIs   = 100
	DefaultMaxErrorSeries = 2000
)

// MaxErrorURIsPerProcedure bounds the error URIs of one procedure outside
// the spec's own, so that one procedure cannot take every place of the
// family's MaxErrorURIs.
const MaxErrorURIsPerProcedure = 10

// isSpecError tells the error URIs of the WAMP spec, and the front's own:
// a fixed set, so they take none of the places clients' URIs compete for
// (a hostile callee answering with made-up URIs cannot push
// wamp.error.no_such_procedure into the overflow), only series.
func isSpecError(uri string) bool {
	switch uri {
	case "wamp.error.invalid_uri", "wamp.error.no_such_procedure", "wamp.error.procedure_already_exists",
		"wamp.error.no_such_registration", "wamp.error.no_such_subscription", "wamp.error.invalid_argument",
		"wamp.error.system_shutdown", "wamp.error.close_realm", "wamp.error.goodbye_and_out",
		"wamp.error.protocol_violation", "wamp.error.not_authorized", "wamp.error.authorization_failed",
		"wamp.error.no_such_realm", "wamp.error.no_such_role", "wamp.error.no_such_session",
		"wamp.error.canceled", "wamp.error.timeout", "wamp.error.option_not_allowed",
		"wamp.error.no_eligible_callee", "wamp.error.option_disallowed.disclose_me",
		"wamp.error.network_failure", "wamp.error.unavailable", "wamp.error.no_available_callee",
		"wamp.error.feature_not_supported", "wamp_observer.error.limit_exceeded":
		return true
	}
	return false
}

// errorReasons is a family's <prefix>_error_reasons_total: the ERRORs that
// answered its calls, by procedure and error URI. Error URIs come from
// clients, so they are bounded like procedures: in length, in distinct
// values over the family (the spec's aside), in values per procedure, and
// in series (procedure and URI pairs). A URI holds its place while a
// series uses it; a procedure's series go when its slot is reclaimed, and
// with them the places of URIs no one else uses, so made-up URIs wear off
// as made-up procedures do. At worst the family has maxSeries series,
// plus one OtherError series per procedure.
//
// Counting reads the procedure's own copy-on-write map, without a lock;
// only a URI new to the procedure (or one counted under OtherError) takes
// Family.mu, which guards the rest.
type errorReasons struct {
	vec                        *prometheus.CounterVec
	maxURIs, maxSeries, maxLen int

	uses   map[string]int // series per error label value, OtherError and the spec's aside
	series int            // series, OtherError ones aside
}

func (e *errorReasons) init(opts FamilyOpts, title string) {
	e.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        opts.Prefix + "_error_reasons_total",
		Help:        "ERRORs answering calls of the " + title + ", by procedure and error URI.",
		ConstLabels: opts.ConstLabels,
	}, []string{"message", "error"})
	e.maxURIs, e.maxSeries, e.maxLen = opts.MaxErrorURIs, opts.MaxErrorSeries, opts.MaxProcedureLen
	e.uses = map[string]int{}
}

// count adds one ERROR with uri to the calls of s. It runs before the call
// stops holding s (record), so s cannot be reclaimed meanwhile.
func (e *errorReasons) count(f *Family, s *procedureSeries, uri []byte) {
	key := string(uri) // a lookup, not an allocation
	if len(uri) == 0 || len(uri) > e.maxLen {
		key = OtherError
	}
	if m := s.errors.Load(); m != nil {
		if c, ok := (*m)[key]; ok {
			c.Inc()
			return
		}
	}
	f.mu.Lock()
	c := e.addLocked(s, uri)
	f.mu.Unlock()
	c.Inc()
}

// addLocked returns the counter for uri in s, creating it within the
// bounds, or the OtherError one.
func (e *errorReasons) addLocked(s *procedureSeries, uri []byte) prometheus.Counter {
	current := map[string]prometheus.Counter{}
	if m := s.errors.Load(); m != nil {
		current = *m
	}
	// Label values must be valid UTF-8 (client_golang panics otherwise);
	// URIs that differ only in invalid bytes share one.
	label := strings.ToValidUTF8(string(uri), "\uFFFD")
	if c, ok := current[label]; ok {
		return c
	}
	spec := isSpecError(label)
	_, known := e.uses[label]
	own := 0 // the procedure's URIs that count against MaxErrorURIsPerProcedure
	for l := range current {
		if l != OtherError && !isSpecError(l) {
			own++
		}
	}
	if len(uri) == 0 || len(label) > e.maxLen || label == OtherError || e.series >= e.maxSeries ||
		(!spec && ((!known && len(e.uses) >= e.maxURIs) || own >= MaxErrorURIsPerProcedure)) {
		label = OtherError
	}
	if c, ok := current[label]; ok {
		return c
	}
	c := e.vec.WithLabelValues(s.label, label)
	next := make(map[string]prometheus.Counter, len(current)+1)
	maps.Copy(next, current)
	next[label] = c
	s.errors.Store(&next)
	if label != OtherError {
		e.series++
		if !spec {
			e.uses[label]++
		}
	}
	return c
}

// forgetLocked deletes the series of s, whose slot is being reclaimed.
func (e *errorReasons) forgetLocked(s *procedureSeries) {
	m := s.errors.Load()
	if m == nil {
		return
	}
	for label := range *m {
		e.vec.DeleteLabelValues(s.label, label)
		if label == OtherError {
			continue
		}
		e.series--
		if isSpecError(label) {
			continue
		}
		if e.uses[label]--; e.uses[label] == 0 {
			delete(e.uses, label)
		}
	}
	s.errors.Store(nil)
}
