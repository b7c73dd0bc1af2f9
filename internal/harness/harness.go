// Package harness starts instances of the router and drives them with real
// clients for the tests: nexus's Go client, raw WAMP sessions, log lines
// over UDP and TCP, PHP and Node processes, a real Prometheus; and it reads
// back what the router counted, polling with a deadline (testkit.Eventually).
//
// Start is the one place that builds an app.Config and runs the program
// in-process; tests say what they need in a harness.Config.
package harness

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/freeport"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// Realm is the realm every instance serves: the program's default.
const Realm = app.DefaultRealm

// Config is what a test sets of an instance; the rest is the program's
// defaults. The router always observes.
type Config struct {
	Timeout       time.Duration // deadline of calls without a timeout option
	MaxProcedures int           // message label values per family; 0: the default
	MaxMessage    int64         // largest WebSocket message; 0: the default
	IdleTimeout   time.Duration // idle keep-alive HTTP connections; 0: the default
	OtherRealms   []string      // realms served beside Realm (ConnectTo joins them)
	Upstream      string        // relay to this router (app.Config.Upstream) instead of the embedded one

	// Log receives log lines on a free loopback port (Instance.LogAddr),
	// UDP and TCP alike.
	Log         bool
	MaxLogLine  int // 0: the default
	MaxLogConns int // 0: the default
}

// Instance is a router running in-process on free loopback ports until the
// test ends.
type Instance struct {
	WAMPURL    string // ws://127.0.0.1:port/
	MetricsURL string // http://127.0.0.1:port, without a path
	LogAddr    string // host:port for log lines; "" without Config.Log
}

// Start runs the program on free loopback ports until the test ends, when
// it shuts down and must return no error.
func Start(t testing.TB, cfg Config) *Instance {
	t.Helper()
	ls := Listeners(t, cfg.Log)
	in := &Instance{
		WAMPURL:    "ws://" + ls.WAMP.Addr().String() + "/",
		MetricsURL: "http://" + ls.Metrics.Addr().String(),
	}
	if ls.Log != nil {
		in.LogAddr = ls.Log.Addr().String()
	}
	RunApp(t, app.Config{
		CallTimeout:     cfg.Timeout,
		MaxProcedures:   cfg.MaxProcedures,
		MaxMessageSize:  cfg.MaxMessage,
		HTTPIdleTimeout: cfg.IdleTimeout,
		MaxLogLineLen:   cfg.MaxLogLine,
		MaxLogConns:     cfg.MaxLogConns,
		OtherRealms:     cfg.OtherRealms,
		Upstream:        cfg.Upstream,
	}, ls)
	return in
}

// RunApp runs the program with cfg (a quiet logger when it has none) on
// ls until stop is called or the test ends; it must then return no error.
func RunApp(t testing.TB, cfg app.Config, ls app.Listeners) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testkit.QuietLog()
	}
	a, err := app.New(cfg, ls)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("router: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Listeners opens the program's listeners on free loopback ports: WAMP,
// metrics and, withLog, the log sockets (UDP and TCP on one port). Whoever
// receives them closes them (app.New does, also when it fails).
func Listeners(t testing.TB, withLog bool) app.Listeners {
	t.Helper()
	var ls app.Listeners
	fail := func(err error) {
		for _, c := range []io.Closer{ls.WAMP, ls.Metrics} {
			if c != nil {
				c.Close()
			}
		}
		t.Fatal(err)
	}
	var err error
	if ls.WAMP, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		fail(err)
	}
	if ls.Metrics, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		fail(err)
	}
	if withLog {
		if ls.Log, err = wamplog.Listen("127.0.0.1:0"); err != nil {
			fail(err)
		}
	}
	return ls
}

// Connect joins the realm with nexus's own Go client, over the serializer
// given; the client is closed when the test ends.
func (in *Instance) Connect(t testing.TB, s serialize.Serialization) *client.Client {
	t.Helper()
	return in.ConnectTo(t, Realm, s)
}

// ConnectTo is Connect to realm.
func (in *Instance) ConnectTo(t testing.TB, realm string, s serialize.Serialization) *client.Client {
	t.Helper()
	return ConnectURL(t, in.WAMPURL, realm, s)
}

// ConnectURL joins realm at the WAMP router at url (this program or another,
// such as StockNexus) with nexus's own Go client, over the serializer given;
// the client is closed when the test ends.
func ConnectURL(t testing.TB, url, realm string, s serialize.Serialization) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.ConnectNet(ctx, url, client.Config{Realm: realm, Serialization: s, Logger: testkit.QuietStdLog()})
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// JoinRaw joins the realm over a bare WebSocket with the subprotocol given
// (wampraw.JSON or wampraw.MsgPack), as every role; the connection is
// closed when the test ends. From other goroutines, use wampraw.Join.
func (in *Instance) JoinRaw(t testing.TB, protocol string) *wampraw.Conn {
	t.Helper()
	c, err := wampraw.Join(context.Background(), in.WAMPURL, Realm, wampraw.Options{Protocol: protocol})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ErrorURI is the WAMP error URI of a call's error, "" for none, or the
// error's text when it is not a WAMP error.
func ErrorURI(err error) string {
	if err == nil {
		return ""
	}
	var rpcErr client.RPCError
	if errors.As(err, &rpcErr) {
		return string(rpcErr.Err.Error)
	}
	return err.Error()
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for programs that cannot be handed a listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// Dial connects to addr over network ("udp", "tcp"); the connection is
// closed when the test ends.
func Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
