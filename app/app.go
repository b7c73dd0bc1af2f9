// Package app wires the program together: the observing router, the call
// tracker and its metrics, and the HTTP servers for WAMP and Prometheus.
// cmd/router parses flags into a Config and calls Run; the integration tests
// call Run in-process on listeners they own.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// Config is everything the program can be told.
type Config struct {
	Realm           string
	Timeout         time.Duration // deadline of calls without a timeout option
	OutQueue        int           // nexus per-client outbound queue
	MaxProcedures   int           // distinct message label values per family
	MaxProcedureLen int           // longest message label value, in bytes
	ProcedureIdle   time.Duration // how long an unused procedure keeps its slot in a full family
	AllowOrigins    []string      // extra Origin patterns for browser apps
	Observe         bool          // false: bare nexus behind the same front
	MaxLogLine      int           // longest log line accepted
	MaxLogConns     int           // concurrent TCP log connections
	LogIdle         time.Duration // TCP log connection idle timeout; < 0: none
	MaxMessage      int64         // largest WebSocket message from a client
	MaxPending      int           // pending calls over all sessions
	MaxPendingPer   int           // pending calls of one session
	Credentials     []router.Credential
	Logger          *slog.Logger

	// The WebSocket front's bounds; 0 takes the router package's default.
	OutQueueBytes    int           // bytes queued per client before it is a slow consumer
	OutQueueBytesAll int           // bytes queued over all clients
	WriteTimeout     time.Duration // one write to a client
	KeepAlive        time.Duration // ping interval for idle clients; negative: off
	MaxConns         int           // concurrent connections on the WAMP port
	MaxCallsInFlight int           // unanswered calls per session
	AllowHosts       []string      // extra Host patterns on a loopback WAMP listener
	IdleTimeout      time.Duration // idle keep-alive HTTP connections; DefaultIdleTimeout when 0
}

// DefaultIdleTimeout closes an HTTP keep-alive connection (on either port)
// that sends no further request; one complete request and then silence
// otherwise held its file descriptor for good.
const DefaultIdleTimeout = 60 * time.Second

// ScrapeTimeout bounds one scrape's rendering (see scrapeGate for how many
// there may be); it matches Prometheus's default scrape_timeout.
const ScrapeTimeout = 10 * time.Second

// Listeners are the sockets Run serves on. The caller opens them, so tests
// can use free ports and the program can report bind errors before starting.
type Listeners struct {
	WAMP    net.Listener
	Metrics net.Listener
	Log     *wamplog.Sockets // nil: no log listener
}

// httpGrace is how long each HTTP server's handlers get to finish on the
// way out. Connections still open then (one that connected and sent
// nothing counts as busy for 5 s in net/http, a scrape in progress) are
// closed: nothing a client does may hold up the shutdown, which stays
// within 2 × httpGrace plus the WebSocket front's flush (about 2.25 s).
const httpGrace = 500 * time.Millisecond

// Run serves WAMP, log lines and metrics until ctx is done, then shuts
// down: it stops accepting connections, says GOODBYE to every session, and
// returns. It closes the listeners.
func Run(ctx context.Context, cfg Config, ls Listeners) error {
	closeAll := func() {
		ls.WAMP.Close()
		ls.Metrics.Close()
		if ls.Log != nil {
			ls.Log.Close()
		}
	}
	defer closeAll() // also on early errors; closing twice is harmless
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	if err := registerRuntime(reg); err != nil {
		return err
	}
	tracker, err := metrics.NewTracker(metrics.TrackerOpts{
		DefaultTimeout: cfg.Timeout, MaxPending: cfg.MaxPending, MaxPendingPerSession: cfg.MaxPendingPer,
	})
	if err != nil {
		return err
	}
	family, err := metrics.NewFamily(reg, metrics.FamilyOpts{
		Prefix: "wamp_router", MaxProcedures: cfg.MaxProcedures, MaxProcedureLen: cfg.MaxProcedureLen, ProcedureIdle: cfg.ProcedureIdle,
	})
	if err != nil {
		return err
	}
	var (
		logListener *wamplog.Listener
		ingester    *wamplog.Ingester
	)
	if ls.Log != nil {
		ingester, err = wamplog.NewIngester(reg, wamplog.IngesterOpts{
			Tracker: tracker, MaxProcedures: cfg.MaxProcedures, MaxProcedureLen: cfg.MaxProcedureLen,
			ProcedureIdle: cfg.ProcedureIdle, Logger: log,
		})
		if err != nil {
			return err
		}
		logListener, err = wamplog.NewListener(reg, ls.Log, ingester, wamplog.ListenerOpts{
			MaxLineLen: cfg.MaxLogLine, MaxConns: cfg.MaxLogConns, IdleTimeout: cfg.LogIdle, Logger: log,
		})
		if err != nil {
			return err
		}
	}
	var open router.OpenSessionFunc
	if cfg.Observe {
		open = func() router.CallSession { return tracker.Open(family) }
	}
	rejected, err := rejectionCounter(reg)
	if err != nil {
		return err
	}
	rtr, err := router.New(router.Config{
		Realm:          cfg.Realm,
		OutQueueSize:   cfg.OutQueue,
		AllowOrigins:   cfg.AllowOrigins,
		OpenSession:    open,
		MaxMessageSize: cfg.MaxMessage,
		Credentials:    cfg.Credentials,
		Rejected:       rejected,
		Logger:         log,

		OutQueueBytes:      cfg.OutQueueBytes,
		OutQueueBytesTotal: cfg.OutQueueBytesAll,
		WriteTimeout:       cfg.WriteTimeout,
		KeepAlive:          cfg.KeepAlive,
		MaxConns:           cfg.MaxConns,
		MaxCallsInFlight:   cfg.MaxCallsInFlight,
		ListenAddr:         ls.WAMP.Addr().String(),
		AllowHosts:         cfg.AllowHosts,
	})
	if err != nil {
		return err
	}
	defer rtr.Close()

	metricsHandler := newScrapeGate(promhttp.HandlerFor(withoutCollisions(reg), promhttp.HandlerOpts{
		Registry:          reg,
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
		Timeout:           ScrapeTimeout,
	}))
	mux := http.NewServeMux()
	mux.Handle("/{$}", metricsHandler) // where the original tool served them
	mux.Handle("/metrics", metricsHandler)

	idle := cfg.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	// The WAMP port only upgrades: a connection that made another request
	// is closed after its answer rather than kept alive, and the
	// listener's bound evicts idlers first (see router.LimitListener).
	wampListener := rtr.LimitListener(ls.WAMP)
	wampServer := &http.Server{Handler: rtr, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle,
		ConnState: wampListener.ConnState}
	wampServer.SetKeepAlivesEnabled(false)
	servers := []*namedServer{
		{name: "WAMP", url: "ws://" + ls.WAMP.Addr().String() + "/", ln: wampListener,
			srv: wampServer},
		{name: "metrics", url: "http://" + ls.Metrics.Addr().String() + "/metrics", ln: ls.Metrics,
			srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
				WriteTimeout: 30 * time.Second, IdleTimeout: idle}},
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { tracker.Run(runCtx) })
	if logListener != nil {
		log.Info("receiving log lines", slog.String("udp", ls.Log.Addr().String()), slog.String("tcp", ls.Log.Addr().String()))
		wg.Go(func() { logListener.Run(runCtx) })
	}
	errs := make(chan error, len(servers))
	for _, s := range servers {
		log.Info("serving "+s.name, slog.String("url", s.url))
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve %s on %s: %w", s.name, s.ln.Addr(), err)
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errs:
		log.Error("server failed, shutting down", slog.Any("err", runErr))
	}

	// New connections are refused first, then every session gets GOODBYE;
	// metrics are served until last.
	shutdown := func(s *namedServer) {
		ctx, cancel := context.WithTimeout(context.Background(), httpGrace)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			log.Info("closing connections still open on the way out", slog.String("server", s.name))
			err = s.srv.Close()
		}
		if err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("shut down %s server: %w", s.name, err))
		}
	}
	shutdown(servers[0])
	rtr.Close()
	shutdown(servers[1])
	stop()
	wg.Wait()
	families := []*metrics.Family{family}
	if ingester != nil {
		ingester.Close() // what its log rate limit held back
		families = append(families, ingester.Families()...)
	}
	logFinalCounts(log, families)
	return runErr
}

// rejectionCounter counts the WebSocket front's rejections by reason, each
// reason's series present from the start.
func rejectionCounter(reg prometheus.Registerer) (func(string), error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wamp_observer_ws_rejections_total",
		Help: "WebSocket connections and messages the router rejected, by reason.",
	}, []string{"reason"})
	if err := reg.Register(vec); err != nil {
		return nil, fmt.Errorf("register rejection metrics: %w", err)
	}
	byReason := map[string]prometheus.Counter{}
	for _, r := range router.RejectReasons() {
		byReason[r] = vec.WithLabelValues(r)
	}
	return func(reason string) {
		if c, ok := byReason[reason]; ok {
			c.Inc()
		}
	}, nil
}

// logFinalCounts logs, once everything has stopped, the totals of every
// call family: a scrape taken before the signal can miss the last calls,
// the log line cannot. Families and their outcomes come in the order of
// their metric names, as a scrape lists them (php_out2_… before php_out_…).
func logFinalCounts(log *slog.Logger, families []*metrics.Family) {
	families = slices.Clone(families)
	slices.SortFunc(families, func(a, b *metrics.Family) int { return strings.Compare(a.Name()+"_", b.Name()+"_") })
	for _, f := range families {
		totals := f.Totals()
		attrs := []slog.Attr{slog.String("family", f.Name())}
		for _, o := range []metrics.Outcome{metrics.Error, metrics.Response, metrics.Timeout} { // errors, responses, timeouts
			attrs = append(attrs, slog.Uint64(o.String(), totals.Calls[o]))
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, "final counts", attrs...)
	}
}

type namedServer struct {
	name, url string
	ln        net.Listener
	srv       *http.Server
}

// registerRuntime adds the Go runtime and process collectors, which show an
// operator the router's own memory, CPU and file descriptors. The Go
// collector also reads /gc/heap/allocs:bytes, as go_gc_heap_allocs_bytes_total,
// in place of the memstats counter that withoutCollisions drops
// (collidesInOpenMetrics).
func registerRuntime(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/allocs:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	return nil
}

// collidesInOpenMetrics tells the families whose OpenMetrics name is also
// another family's: client_golang's Go collector exposes the gauge
// go_memstats_alloc_bytes and the counter go_memstats_alloc_bytes_total,
// whose OpenMetrics family name is go_memstats_alloc_bytes too, and a
// strict parser rejects the whole scrape (client_golang issue #829). The
// same count is go_gc_heap_allocs_bytes_total (see registerRuntime). Every
// format leaves them out, so that all formats show the same families.
func collidesInOpenMetrics(family string) bool { return family == "go_memstats_alloc_bytes_total" }
