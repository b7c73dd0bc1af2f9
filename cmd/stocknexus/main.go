// Command stocknexus serves stock nexus — its own WebsocketServer — for
// benchmarks, with the realm, out-queue and origin settings cmd/router uses.
// It is the anchor `wampload bench` measures the router against: no front
// of ours, no observer, no metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	nexus "github.com/gammazero/nexus/v3/router"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/router"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "stocknexus:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then closes the listener and nexus (which
// says GOODBYE to every session).
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("stocknexus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("wamp", app.DefaultWAMPAddr, "`address` to serve WAMP over WebSocket on (any path)")
	realm := fs.String("realm", app.DefaultRealm, "WAMP realm `name` clients join, anonymously")
	outQueue := fs.Int("out-queue", router.DefaultOutQueueSize,
		"messages nexus queues per client; when a client's queue is full nexus drops what it sends it and refuses calls to it")
	pprofAddr := fs.String("pprof", "", "`address` to serve net/http/pprof on, for comparing profiles with cmd/router's; empty: none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	logger := log.New(stderr, "", log.LstdFlags)
	nx, err := nexus.NewRouter(&nexus.Config{RealmConfigs: []*nexus.RealmConfig{{
		URI: wamp.URI(*realm), AnonymousAuth: true, AllowDisclose: true,
	}}}, logger)
	if err != nil {
		return fmt.Errorf("start nexus router: %w", err)
	}
	defer nx.Close()
	ws := nexus.NewWebsocketServer(nx)
	ws.OutQueueSize = *outQueue
	if ws.Upgrader.CheckOrigin, err = router.OriginPolicy(nil); err != nil { // cmd/router's default
		return err
	}

	if *pprofAddr != "" {
		pl, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("listen for pprof: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ps.Serve(pl) }()
		defer ps.Close()
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen for WAMP: %w", err)
	}
	srv := &http.Server{Handler: ws, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Printf("serving stock nexus realm %s on ws://%s/", *realm, ln.Addr())

	select {
	case err = <-served:
		return fmt.Errorf("serve WAMP: %w", err)
	case <-ctx.Done():
	}
	// Upgraded connections are nexus's, not the server's: Close stops the
	// listener, and the deferred nx.Close ends the sessions.
	srv.Close()
	<-served
	return nil
}
