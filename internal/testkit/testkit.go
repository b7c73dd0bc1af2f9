// Package testkit holds the helpers every package's tests share: polling
// with a deadline (Eventually), a clock moved by hand, quiet loggers, the
// log-line builder, and a lookup of one series in a registry. It imports
// none of this module's packages, so that the tests inside metrics,
// wamplog, ratelog and router can use it; the end-to-end helpers, which
// need the whole program, are in internal/harness.
package testkit

import (
	"io"
	"log"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// FakeClock is a clock tests move by hand. Safe for concurrent use.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock returns a clock standing at start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{t: start} }

// Now is the clock's time; pass the method where a func() time.Time is asked for.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// QuietLog is a logger that writes nothing.
func QuietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// FindMetric returns the first series of the family name whose labels
// include the given name/value pairs, or nil when there is none.
func FindMetric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// QuietStdLog is a logger for nexus (which takes a standard library
// logger) that writes nothing.
func QuietStdLog() *log.Logger { return log.New(io.Discard, "", 0) }
