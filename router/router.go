// Package router embeds a nexus WAMP router behind a WebSocket front that
// observes every call.
//
// The front upgrades HTTP connections with gorilla/websocket, applies an
// origin policy that lets non-browser clients such as Thruway in, and hands
// each connection to nexus through an observing serializer: nexus decodes
// and encodes every message through it, so the observer sees both
// directions inline, with no extra goroutine. What the observer sees goes to
// a CallSession; this package never imports Prometheus.
package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	nexus "github.com/gammazero/nexus/v3/router"
	"github.com/gammazero/nexus/v3/transport"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// DefaultOutQueueSize is the per-client queue of messages waiting to be
// written. nexus defaults to 64, and refuses calls ("callee blocked") once a
// callee's queue is full; 1024 lets one callee serve 100 busy callers with
// room to spare, at 16 KiB of channel per connection.
const DefaultOutQueueSize = 1024

// Config configures a Router.
type Config struct {
	// Realm is the one realm clients may join, anonymously.
	Realm string
	// OutQueueSize is the per-client outbound queue; DefaultOutQueueSize
	// when 0.
	OutQueueSize int
	// AllowOrigins are glob patterns (path.Match syntax, case-insensitive)
	// for the host[:port] of browser Origins to accept beyond the default
	// policy. See originPolicy.
	AllowOrigins []string
	// OpenSession starts the observation of a session. Nil turns the
	// observer off: the front then hands nexus its serializers untouched.
	OpenSession OpenSessionFunc
	// Logger receives the router's and nexus's logs; slog.Default when nil.
	Logger *slog.Logger
}

// Router is an embedded nexus router and the WebSocket front to it. It is
// an http.Handler: every path upgrades to WAMP over WebSocket.
type Router struct {
	nexus    nexus.Router
	upgrader websocket.Upgrader
	outQueue int
	open     OpenSessionFunc
	log      *slog.Logger
	refusals *ratelog.Logger

	closeOnce sync.Once
}

// subprotocols maps the WAMP WebSocket subprotocols to their payload types
// and serializers. Serializers are stateless and shared.
var subprotocols = []struct {
	name        string
	payloadType int
	serializer  serialize.Serializer
}{
	{"wamp.2.json", websocket.TextMessage, &serialize.JSONSerializer{}},
	{"wamp.2.msgpack", websocket.BinaryMessage, &serialize.MessagePackSerializer{}},
	{"wamp.2.cbor", websocket.BinaryMessage, &serialize.CBORSerializer{}},
}

// New starts an embedded nexus router with one realm open to anonymous
// clients. Close it when done.
func New(cfg Config) (*Router, error) {
	if cfg.Realm == "" {
		return nil, errors.New("router: realm must not be empty")
	}
	if cfg.OutQueueSize == 0 {
		cfg.OutQueueSize = DefaultOutQueueSize
	}
	if cfg.OutQueueSize < 1 {
		return nil, fmt.Errorf("router: out queue size must be positive, got %d", cfg.OutQueueSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	check, err := originPolicy(cfg.AllowOrigins)
	if err != nil {
		return nil, err
	}
	nx, err := nexus.NewRouter(&nexus.Config{
		RealmConfigs: []*nexus.RealmConfig{{
			URI:           wamp.URI(cfg.Realm),
			AnonymousAuth: true,
			AllowDisclose: true,
		}},
	}, newNexusLogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("start nexus router: %w", err)
	}
	r := &Router{
		nexus:    nx,
		outQueue: cfg.OutQueueSize,
		open:     cfg.OpenSession,
		log:      cfg.Logger,
		refusals: ratelog.New(cfg.Logger, time.Second, nil),
	}
	r.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      check,
		Error:            r.refuse,
	}
	for _, p := range subprotocols {
		r.upgrader.Subprotocols = append(r.upgrader.Subprotocols, p.name)
	}
	return r, nil
}

// Close ends every session (nexus sends each client GOODBYE) and stops the
// router.
func (r *Router) Close() {
	r.closeOnce.Do(r.nexus.Close)
}

// ServeHTTP upgrades the request to a WebSocket and attaches it to the
// router. It returns when the client has sent HELLO and been answered.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// gorilla accepts a handshake with no common subprotocol and leaves
	// the choice empty; WAMP requires one, so refuse it here with a reason
	// the client can read instead of upgrading and hanging up.
	if !offersWAMP(websocket.Subprotocols(req)) {
		r.refuse(w, req, http.StatusBadRequest,
			errors.New("no supported WebSocket subprotocol offered; use one of "+strings.Join(r.upgrader.Subprotocols, ", ")))
		return
	}
	conn, err := r.upgrader.Upgrade(w, req, nil)
	if err != nil {
		return // the upgrader has answered and r.refuse has logged
	}
	r.attach(conn)
}

func (r *Router) refuse(w http.ResponseWriter, req *http.Request, status int, reason error) {
	r.refusals.Warn("refused WebSocket connection",
		slog.Int("status", status), slog.String("remote", req.RemoteAddr),
		slog.String("origin", req.Header.Get("Origin")), slog.String("reason", reason.Error()))
	http.Error(w, http.StatusText(status)+": "+reason.Error(), status)
}

func offersWAMP(offered []string) bool {
	for _, o := range offered {
		for _, p := range subprotocols {
			if o == p.name {
				return true
			}
		}
	}
	return false
}

func (r *Router) attach(conn *websocket.Conn) {
	var (
		serializer  serialize.Serializer
		payloadType int
	)
	for _, p := range subprotocols {
		if p.name == conn.Subprotocol() {
			serializer, payloadType = p.serializer, p.payloadType
		}
	}
	var wsConn transport.WebsocketConnection = conn
	if r.open != nil {
		obs := newConnObserver(r.open)
		serializer = observingSerializer{Serializer: serializer, obs: obs}
		wsConn = &observedConn{Conn: conn, obs: obs}
	}
	peer := transport.NewWebsocketPeer(wsConn, serializer, payloadType, newNexusLogger(r.log), 0, r.outQueue)
	if err := r.nexus.AttachClient(peer, nil); err != nil {
		r.refusals.Warn("client could not join", slog.String("remote", conn.RemoteAddr().String()), slog.Any("err", err))
	}
}

// observedConn tells the observer when the connection is closed, whichever
// side closes it, so that the session's pending calls are dropped.
type observedConn struct {
	*websocket.Conn
	obs *connObserver
}

func (c *observedConn) Close() error {
	c.obs.endSession()
	return c.Conn.Close()
}
