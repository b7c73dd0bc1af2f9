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
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	nexus "github.com/gammazero/nexus/v3/router"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// DefaultOutQueueSize is the per-client queue of messages waiting to be
// written. nexus defaults to 64, and refuses calls ("callee blocked") once a
// callee's queue is full; 1024 lets one callee serve 100 busy callers with
// room to spare, at 16 KiB of channel per connection.
const DefaultOutQueueSize = 1024

// DefaultMaxMessageSize bounds one WebSocket message from a client. gorilla
// reads a whole message into memory, so without a bound one client could
// make the router allocate without limit. RPC payloads are far smaller.
const DefaultMaxMessageSize = 1 << 20

// Reasons a connection or message is rejected, as passed to
// Config.Rejected. A fixed list: they become label values.
const (
	RejectOrigin      = "origin"            // browser Origin not allowed (HTTP 403)
	RejectSubprotocol = "subprotocol"       // no WAMP subprotocol offered (HTTP 400)
	RejectHandshake   = "handshake"         // any other failed WebSocket handshake
	RejectJoin        = "join"              // no valid HELLO in time, a message before it, or authentication failed
	RejectTooLarge    = "message_too_large" // a message over the size limit; the connection is closed
	RejectUndecodable = "undecodable"       // a message its serializer cannot decode; it is dropped
)

// RejectReasons lists every reason, so that their counters can start at 0.
func RejectReasons() []string {
	return []string{RejectOrigin, RejectSubprotocol, RejectHandshake, RejectJoin, RejectTooLarge, RejectUndecodable}
}

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
	// MaxMessageSize bounds a message from a client, in bytes;
	// DefaultMaxMessageSize when 0.
	MaxMessageSize int64
	// Credentials, when given, replace anonymous access: clients must
	// authenticate with WAMP ticket or WAMP-CRA. See LoadCredentials.
	Credentials []Credential
	// Rejected is told of each rejection, by reason (the Reject
	// constants). It must be cheap and safe for concurrent use.
	Rejected func(reason string)
	// Logger receives the router's and nexus's logs; slog.Default when nil.
	Logger *slog.Logger
}

// Router is an embedded nexus router and the WebSocket front to it. It is
// an http.Handler: every path upgrades to WAMP over WebSocket.
type Router struct {
	nexus      nexus.Router
	upgrader   websocket.Upgrader
	outQueue   int
	maxMessage int64
	open       OpenSessionFunc
	rejected   func(reason string)
	log        *slog.Logger
	refusals   *ratelog.Logger

	nexusLog nexusLogger

	closing   atomic.Bool // set before nexus closes the sessions
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
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize < 1 {
		return nil, fmt.Errorf("router: max message size must be positive, got %d", cfg.MaxMessageSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Rejected == nil {
		cfg.Rejected = func(string) {}
	}
	check, err := originPolicy(cfg.AllowOrigins)
	if err != nil {
		return nil, err
	}
	realm := &nexus.RealmConfig{
		URI:           wamp.URI(cfg.Realm),
		AnonymousAuth: len(cfg.Credentials) == 0,
		AllowDisclose: true,
	}
	if len(cfg.Credentials) > 0 {
		realm.Authenticators = authenticators(cfg.Credentials)
	}
	nexusLog := newNexusLogger(cfg.Logger)
	nx, err := nexus.NewRouter(&nexus.Config{RealmConfigs: []*nexus.RealmConfig{realm}}, nexusLog)
	if err != nil {
		return nil, fmt.Errorf("start nexus router: %w", err)
	}
	r := &Router{
		nexus:      nx,
		outQueue:   cfg.OutQueueSize,
		maxMessage: cfg.MaxMessageSize,
		open:       cfg.OpenSession,
		rejected:   cfg.Rejected,
		log:        cfg.Logger,
		refusals:   ratelog.New(cfg.Logger, time.Second, nil),
		nexusLog:   nexusLog,
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
	r.closing.Store(true)
	r.closeOnce.Do(func() {
		r.nexus.Close()
		// What the rate limits held back is logged last.
		r.refusals.Close()
		r.nexusLog.log.Close()
	})
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
	rejection := RejectHandshake
	switch {
	case status == http.StatusForbidden:
		rejection = RejectOrigin
	case !offersWAMP(websocket.Subprotocols(req)):
		rejection = RejectSubprotocol
	}
	r.rejected(rejection)
	// Each reason is a kind of its own for the rate limit: a flood of
	// foreign Origins must not hide a failing handshake.
	r.refusals.Log(slog.LevelWarn, "refused WebSocket connection: "+rejection, "refused WebSocket connection",
		slog.String("rejection", rejection),
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
	conn.SetReadLimit(r.maxMessage)
	var (
		serializer  serialize.Serializer
		payloadType int
	)
	for _, p := range subprotocols {
		if p.name == conn.Subprotocol() {
			serializer, payloadType = p.serializer, p.payloadType
		}
	}
	var obs *connObserver
	if r.open != nil {
		obs = newConnObserver(r.open)
	}
	peer := newWSPeer(conn, serializer, payloadType, r.outQueue, obs, r.rejected, &r.closing, r.refusals)
	if err := r.nexus.AttachClient(peer, nil); err != nil {
		r.rejected(RejectJoin)
		r.refusals.Warn("client could not join", slog.String("remote", conn.RemoteAddr().String()), slog.Any("err", err))
	}
}
