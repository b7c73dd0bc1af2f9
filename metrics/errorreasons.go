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
// error URIs each, and the WAMP spec's own are about twenty.
const (
	DefaultMaxErrorURIs   = 100
	DefaultMaxErrorSeries = 2000
)

// errorReasons is a family's <prefix>_error_reasons_total: the ERRORs that
// answered its calls, by procedure and error URI. Error URIs come from
// clients, so they are bounded like procedures: in length, in distinct
// values, and in series (procedure and URI pairs). A URI holds its place
// while a series uses it; a procedure's series go when its slot is
// reclaimed, and with them the places of URIs no one else uses, so an
// attack with made-up URIs wears off as procedures do. At worst the
// family has maxSeries series, plus one OtherError series per procedure.
//
// Counting reads the procedure's own copy-on-write map, without a lock;
// only a URI new to the procedure takes Family.mu, which guards the rest.
type errorReasons struct {
	vec                        *prometheus.CounterVec
	maxURIs, maxSeries, maxLen int

	uses   map[string]int // series per error label value, OtherError aside
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
	if m := s.errors.Load(); m != nil {
		if c, ok := (*m)[string(uri)]; ok {
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
	_, known := e.uses[label]
	if len(uri) == 0 || len(uri) > e.maxLen || label == OtherError ||
		(!known && len(e.uses) >= e.maxURIs) || e.series >= e.maxSeries {
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
		e.uses[label]++
		e.series++
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
		if e.uses[label]--; e.uses[label] == 0 {
			delete(e.uses, label)
		}
	}
	s.errors.Store(nil)
}
