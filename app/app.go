// Package app wires the program together: the observing router, the call
// tracker and its metrics, and the HTTP servers for WAMP and Prometheus.
// New builds it all from a Config and the Listeners the caller opened; Run
// serves until its context is done. cmd/router parses flags into a Config;
// the integration tests run it in-process on listeners they own.
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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/php-wamp-observer/php-wamp-observer/live"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// Config is everything the program can be told. Its zero value is the
// product with every default: a field left zero takes the default named in
// its comment, from the package that applies it.
type Config struct {
	Realm       string              // the WAMP realm clients join; DefaultRealm when empty
	OtherRealms []string            // further realms; with any, every router family has a realm label
	CallTimeout time.Duration       // deadline of a call without its own timeout option; metrics.DefaultCallTimeout
	Bare        bool                // observe nothing: bare nexus behind the same front (for benchmarks)
	Credentials []router.Credential // when given, clients must authenticate and anonymous ones are refused
	Upstream    string              // ws:// or wss:// URL of a router to relay every connection to, instead of the embedded one
	Logger      *slog.Logger        // slog.Default when nil

	// What the tracker times and the metric families it feeds.
	MaxPending           int                       // calls timed at once over all sessions and log senders; metrics.DefaultMaxPending
	MaxPendingPerSession int                       // calls timed at once for one session or log sender; metrics.DefaultMaxPendingPerSession
	MaxProcedures        int                       // distinct message label values per family; metrics.DefaultMaxProcedures
	MaxProcedureLen      int                       // longest message label value, in bytes; metrics.DefaultMaxProcedureLen
	ProcedureIdle        time.Duration             // how long an unused procedure keeps its slot in a full family; metrics.DefaultProcedureIdle
	LatencyHistograms    metrics.LatencyExposition // how the per-procedure latency histograms are exposed; metrics.LatencyNative

	// The log listener, when Listeners.Log is given.
	MaxLogLineLen  int           // longest log line accepted, in bytes; wamplog.DefaultMaxLineLen
	MaxLogConns    int           // concurrent TCP log connections; wamplog.DefaultMaxConns
	LogIdleTimeout time.Duration // TCP log connection idle timeout; wamplog.DefaultIdleTimeout; negative: none

	// The WebSocket front.
	OutQueueSize       int           // messages queued per client; router.DefaultOutQueueSize
	OutQueueBytes      int           // bytes queued per client before it is a slow consumer; router.DefaultOutQueueBytes
	OutQueueBytesTotal int           // bytes queued over all clients; router.DefaultOutQueueBytesTotal
	WriteTimeout       time.Duration // one write to a client; router.DefaultWriteTimeout
	KeepAlive          time.Duration // ping interval for idle clients; router.DefaultKeepAlive; negative: off
	MaxMessageSize     int64         // largest WebSocket message from a client; router.DefaultMaxMessageSize
	MaxConns           int           // concurrent connections on the WAMP port; router.DefaultMaxConns
	MaxCallsInFlight   int           // unanswered calls per session; router.DefaultMaxCallsInFlight
	AllowOrigins       []string      // extra Origin patterns for browser apps
	AllowHosts         []string      // extra Host patterns on a loopback WAMP listener

	// Both HTTP servers.
	HTTPIdleTimeout time.Duration // idle keep-alive HTTP connections; DefaultHTTPIdleTimeout; negative: none
}

// EnvPrefix prefixes the environment twin of every flag of cmd/router:
// -out-queue is also read from WAMP_OBSERVER_OUT_QUEUE (see EnvName).
const EnvPrefix = "WAMP_OBSERVER_"

// EnvName is the environment twin of the flag named flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// DefaultRealm is Config.Realm's default, the realm the original tool's
// PHP clients join.
const DefaultRealm = "realm1"

// The addresses the program listens on by default. App takes listeners,
// not addresses: cmd/router binds these unless told otherwise.
const (
	DefaultWAMPAddr    = "127.0.0.1:9090"
	DefaultMetricsAddr = ":8080"
	DefaultLogAddr     = "localhost:6666"
)

// DefaultHTTPIdleTimeout closes an HTTP keep-alive connection (on either
// port) that sends no further request; one complete request and then
// silence otherwise held its file descriptor for good.
const DefaultHTTPIdleTimeout = 60 * time.Second

// ScrapeTimeout bounds one scrape's rendering (see scrapeGate for how many
// there may be); it matches Prometheus's default scrape_timeout.
const ScrapeTimeout = 10 * time.Second

// Listeners are the sockets an App serves on. The caller opens them, so
// tests can use free ports and the program can report bind errors before
// starting. From New on they are the App's: it closes them.
type Listeners struct {
	WAMP    net.Listener
	Metrics net.Listener
	Log     *wamplog.Sockets // nil: no log listener
}

// close closes every listener; closing twice is harmless.
func (ls Listeners) close() {
	if ls.WAMP != nil {
		ls.WAMP.Close()
	}
	if ls.Metrics != nil {
		ls.Metrics.Close()
	}
	if ls.Log != nil {
		ls.Log.Close()
	}
}

// httpGrace is how long each HTTP server's handlers get to finish on the
// way out. Connections still open then (one that connected and sent
// nothing counts as busy for 5 s in net/http, a scrape in progress) are
// closed: nothing a client does may hold up the shutdown, which stays
// within 2 × httpGrace plus the WebSocket front's flush (about 2.25 s).
const httpGrace = 500 * time.Millisecond

// App is the program, built and ready to serve.
type App struct {
	log         *slog.Logger
	ls          Listeners
	reg         *prometheus.Registry
	tracker     *metrics.Tracker
	realms      []*realmMetrics   // the first is Config.Realm's
	family      *metrics.Family   // the router's caller side in the first realm, for the live page
	ingester    *wamplog.Ingester // nil without a log listener
	logListener *wamplog.Listener // nil without a log listener
	router      *router.Router
	page        *live.Sampler

	wampServer, metricsServer *namedServer

	ran atomic.Bool
}

// namedServer is an HTTP server, its listener, and its name in the logs.
type namedServer struct {
	name, url string
	ln        net.Listener
	srv       *http.Server
}

// New builds the program from cfg on ls: the registry and runtime metrics,
// the tracker and its families, the log ingester and listener (when ls.Log
// is given), the router, and the WAMP and metrics HTTP servers. Nothing is
// served until Run. An invalid cfg is reported here.
//
// The listeners are the App's from now on. If New fails, it closes them
// before it returns, so a caller never has to; otherwise Run closes them.
// An App holds a running router: Run it, even if only with a context that
// is already done, to release it.
func New(cfg Config, ls Listeners) (_ *App, err error) {
	a := &App{ls: ls, log: cfg.Logger}
	defer func() {
		if err != nil {
			if a.router != nil {
				a.router.Close()
			}
			ls.close()
		}
	}()
	if ls.WAMP == nil || ls.Metrics == nil {
		return nil, errors.New("app: the WAMP and metrics listeners are required")
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if cfg.Realm == "" {
		cfg.Realm = DefaultRealm
	}
	if cfg.HTTPIdleTimeout == 0 {
		cfg.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	a.reg = prometheus.NewRegistry()
	if err := registerRuntime(a.reg); err != nil {
		return nil, err
	}
	if a.tracker, err = metrics.NewTracker(metrics.TrackerOpts{
		DefaultTimeout: cfg.CallTimeout, MaxPending: cfg.MaxPending, MaxPendingPerSession: cfg.MaxPendingPerSession,
	}); err != nil {
		return nil, err
	}
	for _, realm := range append([]string{cfg.Realm}, cfg.OtherRealms...) {
		var labels prometheus.Labels
		if len(cfg.OtherRealms) > 0 {
			labels = prometheus.Labels{"realm": realm}
		}
		r, err := newRealmMetrics(a.reg, realm, labels, cfg)
		if err != nil {
			return nil, err
		}
		a.realms = append(a.realms, r)
	}
	a.family = a.realms[0].calls
	if ls.Log != nil {
		if a.ingester, err = wamplog.NewIngester(a.reg, wamplog.IngesterOpts{
			Tracker: a.tracker, MaxProcedures: cfg.MaxProcedures, MaxProcedureLen: cfg.MaxProcedureLen,
			ProcedureIdle: cfg.ProcedureIdle, Latency: cfg.LatencyHistograms, Logger: a.log,
		}); err != nil {
			return nil, err
		}
		if a.logListener, err = wamplog.NewListener(a.reg, ls.Log, a.ingester, wamplog.ListenerOpts{
			MaxLineLen: cfg.MaxLogLineLen, MaxConns: cfg.MaxLogConns, IdleTimeout: cfg.LogIdleTimeout, Logger: a.log,
		}); err != nil {
			return nil, err
		}
	}
	var (
		open    router.OpenSessionFunc
		traffic router.TrafficFunc
	)
	if !cfg.Bare {
		open = func(realm string) router.SessionObservers {
			r := a.realm(realm)
			return router.SessionObservers{
				Calls:       a.tracker.Open(r.calls),
				Invocations: invocations{a.tracker.Open(r.invocations)},
			}
		}
		traffic = func(realm string) router.TrafficObserver { return trafficObserver{a.realm(realm).traffic} }
	}
	rejected, err := rejectionCounter(a.reg)
	if err != nil {
		return nil, err
	}
	if a.router, err = router.New(router.Config{
		Realm:          cfg.Realm,
		Upstream:       cfg.Upstream,
		OtherRealms:    cfg.OtherRealms,
		OutQueueSize:   cfg.OutQueueSize,
		AllowOrigins:   cfg.AllowOrigins,
		OpenSession:    open,
		Traffic:        traffic,
		MaxMessageSize: cfg.MaxMessageSize,
		Credentials:    cfg.Credentials,
		Rejected:       rejected,
		Logger:         a.log,

		OutQueueBytes:      cfg.OutQueueBytes,
		OutQueueBytesTotal: cfg.OutQueueBytesTotal,
		WriteTimeout:       cfg.WriteTimeout,
		KeepAlive:          cfg.KeepAlive,
		MaxConns:           cfg.MaxConns,
		MaxCallsInFlight:   cfg.MaxCallsInFlight,
		ListenAddr:         ls.WAMP.Addr().String(),
		AllowHosts:         cfg.AllowHosts,
	}); err != nil {
		return nil, err
	}

	// The WAMP port only upgrades: a connection that made another request
	// is closed after its answer rather than kept alive, and the
	// listener's bound evicts idlers first (see router.LimitListener).
	wampListener := a.router.LimitListener(ls.WAMP)
	wampServer := &http.Server{Handler: a.router, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.HTTPIdleTimeout,
		ConnState: wampListener.ConnState}
	wampServer.SetKeepAlivesEnabled(false)
	a.wampServer = &namedServer{name: "WAMP", url: "ws://" + ls.WAMP.Addr().String() + "/", ln: wampListener,
		srv: wampServer}

	metricsHandler := newScrapeGate(promhttp.HandlerFor(withoutCollisions(a.reg), promhttp.HandlerOpts{
		Registry:          a.reg,
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelError),
		Timeout:           ScrapeTimeout,
	}))
	a.page = live.NewSampler(a.pageSources(), nil)
	pageHandler := a.page.Handler(a.log)
	mux := http.NewServeMux()
	// The metrics are where the original tool served them, at /; a
	// browser gets the live page there instead.
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept")
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && live.PrefersHTML(r) {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/ui"
			pageHandler.ServeHTTP(w, r2)
			return
		}
		metricsHandler.ServeHTTP(w, r)
	})
	mux.Handle("/metrics", metricsHandler)
	mux.Handle("/ui", pageHandler)
	mux.Handle("/ui/", pageHandler)
	a.metricsServer = &namedServer{name: "metrics", url: "http://" + ls.Metrics.Addr().String() + "/metrics", ln: ls.Metrics,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: cfg.HTTPIdleTimeout}}
	return a, nil
}

// Run serves WAMP, log lines and metrics until ctx is done or a server
// fails, then shuts down: it stops accepting WAMP connections, says
// GOODBYE to every session, stops the metrics server last, stops the
// tracker and log listener, and logs the final counts. It closes the
// listeners. Run an App once.
func (a *App) Run(ctx context.Context) error {
	if a.ran.Swap(true) {
		return errors.New("app: Run called twice")
	}
	defer a.ls.close()     // closing twice is harmless
	defer a.router.Close() // likewise; the shutdown below closes it in order

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { a.tracker.Run(runCtx) })
	wg.Go(func() { a.page.Run(runCtx) })
	if a.logListener != nil {
		a.log.Info("receiving log lines", slog.String("udp", a.ls.Log.Addr().String()), slog.String("tcp", a.ls.Log.Addr().String()))
		wg.Go(func() { a.logListener.Run(runCtx) })
	}
	errs := make(chan error, 2)
	for _, s := range []*namedServer{a.wampServer, a.metricsServer} {
		a.log.Info("serving "+s.name, slog.String("url", s.url))
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve %s on %s: %w", s.name, s.ln.Addr(), err)
			}
		})
	}

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
	case runErr = <-errs:
		a.log.Error("server failed, shutting down", slog.Any("err", runErr))
	}

	// New connections are refused first, then every session gets GOODBYE;
	// metrics are served until last.
	runErr = errors.Join(runErr, a.shutdown(a.wampServer))
	a.router.Close()
	runErr = errors.Join(runErr, a.shutdown(a.metricsServer))
	stop()
	wg.Wait()
	var families []finalCounts
	for _, r := range a.realms {
		realm := ""
		if len(a.realms) > 1 {
			realm = r.name
		}
		families = append(families, finalCounts{r.calls, realm}, finalCounts{r.invocations, realm})
	}
	if a.ingester != nil {
		a.ingester.Close() // what its log rate limit held back
		for _, f := range a.ingester.Families() {
			families = append(families, finalCounts{f, ""})
		}
	}
	logFinalCounts(a.log, families)
	return runErr
}

// realmMetrics are the router's families in one realm: its calls as
// callers see them (wamp_router), as callees do (wamp_router_callee), and
// its traffic.
type realmMetrics struct {
	name               string
	calls, invocations *metrics.Family
	traffic            *metrics.Traffic
}

func newRealmMetrics(reg prometheus.Registerer, realm string, labels prometheus.Labels, cfg Config) (*realmMetrics, error) {
	r := &realmMetrics{name: realm}
	opts := metrics.FamilyOpts{
		Prefix: "wamp_router", MaxProcedures: cfg.MaxProcedures, MaxProcedureLen: cfg.MaxProcedureLen, ProcedureIdle: cfg.ProcedureIdle,
		Latency: cfg.LatencyHistograms, ConstLabels: labels,
	}
	var err error
	if r.calls, err = metrics.NewFamily(reg, opts); err != nil {
		return nil, err
	}
	opts.Prefix, opts.Interrupts = "wamp_router_callee", true
	if r.invocations, err = metrics.NewFamily(reg, opts); err != nil {
		return nil, err
	}
	if r.traffic, err = metrics.NewTraffic(reg, metrics.TrafficOpts{
		Prefix: "wamp_router", MessageTypes: router.MessageTypes(), CloseReasons: router.CloseReasons(),
		RefusalReasons: router.RefusalReasons(), Callees: r.invocations,
		MaxTopics: cfg.MaxProcedures, MaxTopicLen: cfg.MaxProcedureLen, TopicIdle: cfg.ProcedureIdle, ConstLabels: labels,
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// realm returns the metrics of realm, or of the first realm for one the
// router does not serve (a HELLO for it is refused; its messages count
// there).
func (a *App) realm(name string) *realmMetrics {
	for _, r := range a.realms {
		if r.name == name {
			return r
		}
	}
	return a.realms[0]
}

// invocations is the callee side of a session: the INVOCATIONs the router
// sends it. Its answer, or the dealer's INTERRUPT, ends each: nexus
// enforces a call's timeout option and tells the callee with INTERRUPT,
// and forwards the option only when the callee asked. So an invocation's
// deadline is only a backstop, DealerBackstop after the forwarded timeout,
// or after CalleeBackstop without one: the dealer itself waits for the
// callee as long as it takes, and the caller's 10 s CALL timeout must not
// make a 6 s answer a timeout here.
type invocations struct{ *metrics.Session }

// CalleeBackstop is how long the callee side waits for the answer to an
// INVOCATION that carries no timeout before it counts a timeout (of this
// length): the longest timeout a log line may ask for, as for the log
// path's calls.
const CalleeBackstop = wamplog.DefaultMaxTimeout

func (s invocations) Call(id uint64, procedure string, timeout time.Duration) {
	if timeout <= 0 {
		timeout = CalleeBackstop
	}
	s.Session.Call(id, procedure, timeout)
}

// trafficObserver is a metrics.Traffic as the router observes into it.
type trafficObserver struct{ *metrics.Traffic }

func (t trafficObserver) OpenConn() router.ConnTraffic { return t.Open() }

// pageSources are what the live page reads: the router's family and the
// PHP callers' and callees' log families (wamp_out, wamp_in) once they
// exist.
func (a *App) pageSources() live.Sources {
	src := live.Sources{
		Family: func(v live.View) *metrics.Family {
			switch v {
			case live.Router:
				return a.family
			case live.Caller:
				return a.logFamily("wamp_out")
			case live.Callee:
				return a.logFamily("wamp_in")
			}
			return nil
		},
		Sessions: a.family.Sessions, // not Totals: its histograms wait for calls being recorded
		InFlight: a.family.Pending,
	}
	if a.ingester != nil {
		src.LogLines = a.ingester.LineTotals
		src.UDPDrops = a.logListener.UDPKernelDrops
	}
	return src
}

// logFamily is the log family named name, or nil.
func (a *App) logFamily(name string) *metrics.Family {
	if a.ingester == nil {
		return nil
	}
	for _, f := range a.ingester.Families() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

// shutdown stops s, giving its handlers httpGrace to finish and closing
// the connections still open then.
func (a *App) shutdown(s *namedServer) error {
	ctx, cancel := context.WithTimeout(context.Background(), httpGrace)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		a.log.Info("closing connections still open on the way out", slog.String("server", s.name))
		err = s.srv.Close()
	}
	if err != nil {
		return fmt.Errorf("shut down %s server: %w", s.name, err)
	}
	return nil
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

// finalCounts is a family whose totals are logged on the way out, and its
// realm when the router serves several.
type finalCounts struct {
	family *metrics.Family
	realm  string
}

// logFinalCounts logs, once everything has stopped, the totals of every
// call family: a scrape taken before the signal can miss the last calls,
// the log line cannot. Families and their outcomes come in the order of
// their metric names, as a scrape lists them (php_out2_… before php_out_…).
func logFinalCounts(log *slog.Logger, families []finalCounts) {
	families = slices.Clone(families)
	slices.SortStableFunc(families, func(a, b finalCounts) int {
		return strings.Compare(a.family.Name()+"_", b.family.Name()+"_")
	})
	for _, fc := range families {
		f := fc.family
		totals := f.Totals()
		attrs := []slog.Attr{slog.String("family", f.Name())}
		if fc.realm != "" {
			attrs = append(attrs, slog.String("realm", fc.realm))
		}
		for _, o := range []metrics.Outcome{metrics.Error, metrics.Response, metrics.Timeout} { // errors, responses, timeouts
			attrs = append(attrs, slog.Uint64(o.String(), totals.Calls[o]))
		}
		log.LogAttrs(context.Background(), slog.LevelInfo, "final counts", attrs...)
	}
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
