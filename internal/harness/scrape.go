package harness

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one scrape in the text format, parsed with expfmt. Its lookups
// return a value and whether the series exists; the test decides what a
// missing series means (not there yet while polling, a failure when
// asserting, zero for a count that may not have started).
type Scrape struct {
	families map[string]*dto.MetricFamily
}

// ParseScrape parses a scrape in the Prometheus text format.
func ParseScrape(r io.Reader) (*Scrape, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	return &Scrape{families: mfs}, nil
}

// Scrape fetches and parses /metrics.
func (in *Instance) Scrape(t testing.TB) *Scrape {
	t.Helper()
	return in.ScrapePath(t, "/metrics")
}

// ScrapePath fetches and parses the metrics server's path.
func (in *Instance) ScrapePath(t testing.TB, path string) *Scrape {
	t.Helper()
	rsp, err := http.Get(in.MetricsURL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, rsp.Status)
	}
	s, err := ParseScrape(rsp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return s
}

// Get fetches the metrics server's path with the Accept header given ("":
// none), and fails the test unless the answer is 200.
func (in *Instance) Get(t testing.TB, path, accept string) (contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.MetricsURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	body, err = io.ReadAll(rsp.Body)
	if err != nil || rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", path, rsp.Status, err)
	}
	return rsp.Header.Get("Content-Type"), body
}

// Family is the metric family of that name, as parsed.
func (s *Scrape) Family(name string) (*dto.MetricFamily, bool) {
	mf, ok := s.families[name]
	return mf, ok
}

// Counter is the value of the counter series of family whose labels include
// the name/value pairs given; with none, the family's only series. The
// lookups below select series the same way: exactly one must match.
func (s *Scrape) Counter(family string, labels ...string) (float64, bool) {
	m, ok := s.series(family, labels)
	if !ok || m.Counter == nil {
		return 0, false
	}
	return m.GetCounter().GetValue(), true
}

// Gauge is the value of a gauge series.
func (s *Scrape) Gauge(family string, labels ...string) (float64, bool) {
	m, ok := s.series(family, labels)
	if !ok || m.Gauge == nil {
		return 0, false
	}
	return m.GetGauge().GetValue(), true
}

// Summary is the sample count and sum of a summary series.
func (s *Scrape) Summary(family string, labels ...string) (count uint64, sum float64, ok bool) {
	m, ok := s.series(family, labels)
	if !ok || m.Summary == nil {
		return 0, 0, false
	}
	return m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum(), true
}

// Histogram is a histogram series.
func (s *Scrape) Histogram(family string, labels ...string) (*dto.Histogram, bool) {
	m, ok := s.series(family, labels)
	if !ok || m.Histogram == nil {
		return nil, false
	}
	return m.GetHistogram(), true
}

// CounterTotal is the sum of a counter family's series.
func (s *Scrape) CounterTotal(family string) (float64, bool) {
	mf, ok := s.families[family]
	if !ok {
		return 0, false
	}
	var n float64
	for _, m := range mf.GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n, true
}

// SummaryTotal is the sum of the sample counts of a summary family's
// series.
func (s *Scrape) SummaryTotal(family string) (uint64, bool) {
	mf, ok := s.families[family]
	if !ok {
		return 0, false
	}
	var n uint64
	for _, m := range mf.GetMetric() {
		n += m.GetSummary().GetSampleCount()
	}
	return n, true
}

// series is the one series of family whose labels include the name/value
// pairs given.
func (s *Scrape) series(family string, labels []string) (*dto.Metric, bool) {
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("harness: labels %q are not name/value pairs", labels))
	}
	var found *dto.Metric
	for _, m := range s.families[family].GetMetric() {
		if hasLabels(m, labels) {
			if found != nil {
				return nil, false // ambiguous
			}
			found = m
		}
	}
	return found, found != nil
}

func hasLabels(m *dto.Metric, pairs []string) bool {
next:
	for i := 0; i < len(pairs); i += 2 {
		for _, l := range m.GetLabel() {
			if l.GetName() == pairs[i] && l.GetValue() == pairs[i+1] {
				continue next
			}
		}
		return false
	}
	return true
}
