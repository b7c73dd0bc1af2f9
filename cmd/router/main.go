// Command router is the php-wamp-observer: a WAMP v2 router that times
// every call per procedure and serves the figures to Prometheus.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}

// settings are the flag values before they become an app.Config.
type settings struct {
	wampAddr, metricsAddr, logAddr, authFile, pprofAddr string
	cfg                                                 app.Config
}

func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stderr io.Writer) error {
	s, err := parseFlags(args, lookupEnv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	s.cfg.Logger = log
	if s.authFile != "" {
		if s.cfg.Credentials, err = router.LoadCredentials(s.authFile); err != nil {
			return err
		}
	}
	if s.pprofAddr != "" {
		stop, err := servePprof(s.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	wampLn, err := net.Listen("tcp", s.wampAddr)
	if err != nil {
		return fmt.Errorf("listen for WAMP: %w", err)
	}
	metricsLn, err := net.Listen("tcp", s.metricsAddr)
	if err != nil {
		wampLn.Close()
		return fmt.Errorf("listen for metrics: %w", err)
	}
	ls := app.Listeners{WAMP: wampLn, Metrics: metricsLn}
	if s.logAddr != "" {
		if ls.Log, err = wamplog.Listen(s.logAddr); err != nil {
			wampLn.Close()
			metricsLn.Close()
			return err
		}
	}
	a, err := app.New(s.cfg, ls) // closes the listeners if it fails
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// servePprof serves net/http/pprof on addr, for profiling under load.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving pprof", slog.String("at", "http://"+ln.Addr().String()+"/debug/pprof/"))
	go srv.Serve(ln)
	return func() { srv.Close() }, nil
}

// parseFlags reads the command line, falling back to WAMP_OBSERVER_<NAME>
// environment variables for flags not given on it. Every default is the
// constant the package that applies it exports, so that no flags and a
// zero app.Config run the same program.
func parseFlags(args []string, lookupEnv func(string) (string, bool), out io.Writer) (settings, error) {
	var s settings
	observe := true
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&s.wampAddr, "wamp", app.DefaultWAMPAddr, "`address` to serve WAMP over WebSocket on (any path)")
	fs.StringVar(&s.metricsAddr, "metrics", app.DefaultMetricsAddr, "`address` to serve Prometheus metrics on, at / and /metrics, and the live page at /ui (and at / for a browser)")
	fs.StringVar(&s.logAddr, "log", app.DefaultLogAddr,
		"`address` to receive WampObserver log lines on, over UDP and TCP; empty turns it off")
	fs.IntVar(&s.cfg.MaxLogLineLen, "max-log-line", wamplog.DefaultMaxLineLen,
		"longest log line accepted, in bytes; longer ones are counted and skipped")
	s.cfg.Realm = app.DefaultRealm
	fs.Var(&realmsFlag{first: &s.cfg.Realm, more: &s.cfg.OtherRealms}, "realm",
		"WAMP realm `name` clients join, anonymously unless -auth-file is given (repeatable; env: comma-separated); "+
			"with more than one, every router metric has a realm label")
	fs.DurationVar(&s.cfg.CallTimeout, "timeout", metrics.DefaultCallTimeout,
		"deadline of a call without its own CALL timeout option; unanswered by then, it counts as a timeout")
	fs.IntVar(&s.cfg.OutQueueSize, "out-queue", router.DefaultOutQueueSize,
		"messages queued per client; a client whose queue is full is a slow consumer and is disconnected")
	fs.IntVar(&s.cfg.OutQueueBytes, "out-queue-bytes", router.DefaultOutQueueBytes,
		"bytes (as encoded) queued per client; a client whose queue is full in messages or bytes is a slow consumer and is disconnected")
	fs.IntVar(&s.cfg.OutQueueBytesTotal, "out-queue-bytes-total", router.DefaultOutQueueBytesTotal,
		"bytes (as encoded) queued over all clients; a client whose next message does not fit is a slow consumer and is disconnected")
	fs.DurationVar(&s.cfg.WriteTimeout, "write-timeout", router.DefaultWriteTimeout,
		"deadline of one write to a client (met to within an eighth of it); a client that does not take a message in time is a slow consumer and is disconnected")
	s.cfg.KeepAlive = router.DefaultKeepAlive
	fs.Var((*offDuration)(&s.cfg.KeepAlive), "keepalive",
		"ping a client quiet for half this `interval`; one that sends nothing, not even a pong, for twice it (15/8 to 2×) is disconnected; 0 or negative: off")
	fs.IntVar(&s.cfg.MaxConns, "max-conns", router.DefaultMaxConns,
		"concurrent connections on the WAMP port, upgraded or not; further ones get HTTP 503")
	fs.IntVar(&s.cfg.MaxCallsInFlight, "max-calls-in-flight", router.DefaultMaxCallsInFlight,
		"unanswered calls per session; further calls are answered with ERROR "+string(router.ErrLimitExceeded))
	fs.Func("allow-host", "on a loopback WAMP listener, also accept a Host header (host[:port]) matching this glob `pattern` "+
		"(repeatable; env: comma-separated); by default only localhost, 127.0.0.0/8 and [::1]",
		func(v string) error {
			s.cfg.AllowHosts = appendList(s.cfg.AllowHosts, v)
			return nil
		})
	fs.IntVar(&s.cfg.MaxProcedures, "max-procedures", metrics.DefaultMaxProcedures,
		"distinct procedures (message label values) per metric family; further ones take the slot of an idle one (see -procedure-idle) "+
			"or are recorded as message=\""+metrics.OtherProcedure+"\"")
	fs.IntVar(&s.cfg.MaxProcedureLen, "max-procedure-len", metrics.DefaultMaxProcedureLen,
		"longest procedure, in bytes, with a message label value of its own; longer ones are recorded as message=\""+metrics.OtherProcedure+"\"")
	fs.DurationVar(&s.cfg.ProcedureIdle, "procedure-idle", metrics.DefaultProcedureIdle,
		"once a family has -max-procedures, a procedure with no call, pending call or registration for this long gives its slot (and series) to a new one")
	fs.Var(latencyFlag{&s.cfg.LatencyHistograms}, "latency-histograms",
		"how the per-procedure <prefix>_<outcome>_latency_seconds histograms are exposed: native (Prometheus with "+
			"--enable-feature=native-histograms), classic (buckets of the _total_seconds histograms), both, or off")
	fs.Func("allow-origin", "also accept browser Origins whose host[:port] matches this glob `pattern` (repeatable; env: comma-separated); "+
		"by default only those naming the host the client connected to",
		func(v string) error {
			s.cfg.AllowOrigins = appendList(s.cfg.AllowOrigins, v)
			return nil
		})
	fs.IntVar(&s.cfg.MaxLogConns, "max-log-conns", wamplog.DefaultMaxConns,
		"concurrent TCP log connections; further ones are closed at once")
	s.cfg.LogIdleTimeout = wamplog.DefaultIdleTimeout
	fs.Var((*offDuration)(&s.cfg.LogIdleTimeout), "log-idle-timeout",
		"close a TCP log connection that sent nothing for this `duration` (its pending calls then time out); 0 or negative turns it off")
	fs.Int64Var(&s.cfg.MaxMessageSize, "max-message", router.DefaultMaxMessageSize,
		"largest WebSocket message a client may send, in bytes; a larger one closes its connection")
	fs.IntVar(&s.cfg.MaxPending, "max-pending", metrics.DefaultMaxPending,
		"calls timed at once over all sessions and log senders; further calls are counted as untracked")
	fs.IntVar(&s.cfg.MaxPendingPerSession, "max-pending-session", metrics.DefaultMaxPendingPerSession,
		"calls timed at once for one session or log sender; further calls are counted as untracked")
	fs.StringVar(&s.cfg.Upstream, "upstream", "",
		"ws:// or wss:// `URL` of a WAMP router to relay every client connection to, observed as here, instead of the embedded router; "+
			"the upstream authenticates (no -auth-file) and serves the realms (-realm then only names what is counted apart)")
	fs.StringVar(&s.authFile, "auth-file", "",
		"JSON `file` of credentials (WAMP ticket and/or WAMP-CRA); when set, anonymous clients are refused")
	fs.StringVar(&s.pprofAddr, "pprof", "", "`address` to serve net/http/pprof on, for profiling; empty (the default) turns it off")
	fs.BoolVar(&observe, "observe", true, "observe calls; false serves bare nexus behind the same front (for benchmarks)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: router [flags]\n\nA WAMP v2 router that times every call per procedure for Prometheus.\n"+
			"Every flag can also be set with the environment variable %s<NAME>, e.g. %sTIMEOUT=500ms.\n\n", app.EnvPrefix, app.EnvPrefix)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := app.EnvName(f.Name)
		if v, ok := lookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	s.cfg.Bare = !observe
	// In an app.Config, 0 means the default; given as a flag, 0 would
	// silently mean it too. These two were always refused at 0.
	if s.cfg.CallTimeout <= 0 {
		envErr = errors.Join(envErr, fmt.Errorf("-timeout %v: must be positive", s.cfg.CallTimeout))
	}
	if s.cfg.MaxProcedures <= 0 {
		envErr = errors.Join(envErr, fmt.Errorf("-max-procedures %d: must be positive", s.cfg.MaxProcedures))
	}
	return s, envErr
}

// appendList appends the comma-separated patterns in v to list, skipping
// blank ones.
func appendList(list []string, v string) []string {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			list = append(list, p)
		}
	}
	return list
}

// realmsFlag is the repeatable -realm flag: the first value given replaces
// the default realm, the others follow it.
type realmsFlag struct {
	first *string
	more  *[]string
	given bool
}

func (f *realmsFlag) String() string {
	if f.first == nil {
		return ""
	}
	return strings.Join(append([]string{*f.first}, *f.more...), ",")
}

func (f *realmsFlag) Set(v string) error {
	for _, realm := range appendList(nil, v) {
		if !f.given {
			*f.first, f.given = realm, true
			continue
		}
		if realm == *f.first || slices.Contains(*f.more, realm) {
			return fmt.Errorf("realm %q given twice", realm)
		}
		*f.more = append(*f.more, realm)
	}
	if !f.given {
		return errors.New("a realm name must not be empty")
	}
	return nil
}

// offDuration is a duration flag for which 0 or negative means off. It
// stores off as -1, since in an app.Config 0 means the default and a
// negative duration off.
type offDuration time.Duration

// latencyFlag is the -latency-histograms flag. A wrapper, so that its zero
// value prints as "" and -h shows the default (the flag package leaves out
// a default equal to the zero value's String).
type latencyFlag struct{ mode *metrics.LatencyExposition }

func (f latencyFlag) String() string {
	if f.mode == nil {
		return ""
	}
	return f.mode.String()
}

func (f latencyFlag) Set(v string) error { return f.mode.Set(v) }

func (d *offDuration) String() string {
	if d == nil || *d < 0 {
		return "0s"
	}
	return time.Duration(*d).String()
}

func (d *offDuration) Set(v string) error {
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	if parsed <= 0 {
		parsed = -1
	}
	*d = offDuration(parsed)
	return nil
}
