package app

import (
	"bytes"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MaxScrapesInFlight bounds the scrapes the metrics server holds at once:
// one is rendered, the others wait for their turn; further ones get HTTP
// 503 at once, so idle or storming scrapers cannot pile up.
const MaxScrapesInFlight = 4

// minScrapeInterval is the least time between the starts of two renders:
// at most ten scrapes a second are rendered, whatever scrapers do, which
// is plenty for several Prometheus servers and dashboards.
const minScrapeInterval = 100 * time.Millisecond

// scrapeGate renders one scrape at a time. A full router family is 1,000
// procedures, several milliseconds of CPU and 1.3 MB of garbage to gather
// and encode: many scrapers at once otherwise take the CPU the router's own
// goroutines need, and the calls it times then look slower than they are
// (measured: 100 scrapers made a caller's answered calls count as
// timeouts). One at a time, and at most ten a second (minScrapeInterval), a
// storm costs a few per cent of one core: a full family renders in about
// 6 ms. Each scrape gathers afresh, so it never shows figures older than
// its arrival.
//
// A scrape is rendered into memory and written after its turn ends, so a
// scraper that reads slowly holds only its own place, not the turn. The
// memory this takes is bounded by MaxScrapesInFlight scrapes.
type scrapeGate struct {
	next   http.Handler
	places chan struct{} // one per scrape held, rendered or waiting
	turn   chan struct{} // one: the scrape being rendered
}

func newScrapeGate(next http.Handler) *scrapeGate {
	return &scrapeGate{next: next, places: make(chan struct{}, MaxScrapesInFlight), turn: make(chan struct{}, 1)}
}

func (g *scrapeGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case g.places <- struct{}{}:
	default:
		http.Error(w, "too many scrapes in progress", http.StatusServiceUnavailable)
		return
	}
	defer func() { <-g.places }()
	select {
	case g.turn <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	rendered := g.render(r)
	for k, v := range rendered.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rendered.status)
	_, _ = w.Write(rendered.body.Bytes())
}

// render renders one scrape into memory in the turn it holds, and gives
// the turn back: minScrapeInterval after it started, and also if a
// collector panics (net/http recovers that), so the turn is never kept.
func (g *scrapeGate) render(r *http.Request) *renderedScrape {
	start := time.Now()
	defer func() {
		if wait := minScrapeInterval - time.Since(start); wait > 0 {
			time.AfterFunc(wait, func() { <-g.turn })
		} else {
			<-g.turn
		}
	}()
	rendered := &renderedScrape{header: http.Header{}, status: http.StatusOK}
	g.next.ServeHTTP(rendered, r)
	return rendered
}

// renderedScrape is an http.ResponseWriter into memory.
type renderedScrape struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (s *renderedScrape) Header() http.Header         { return s.header }
func (s *renderedScrape) WriteHeader(status int)      { s.status = status }
func (s *renderedScrape) Write(b []byte) (int, error) { return s.body.Write(b) }

// withoutCollisions gathers from g without the families
// collidesInOpenMetrics names, in every format, so that all formats show
// the same families.
func withoutCollisions(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		return slices.DeleteFunc(mfs, func(mf *dto.MetricFamily) bool { return collidesInOpenMetrics(mf.GetName()) }), err
	})
}
