// Package router embeds a nexus WAMP router behind a WebSocket front that
// observes every call and keeps hostile clients from harming anyone else;
// or, with Config.Upstream, puts the same front before another WAMP router
// and relays each connection there unchanged (see relay).
//
// The front upgrades HTTP connections with gorilla/websocket, applies an
// origin and host policy that lets non-browser clients such as Thruway in,
// and attaches each connection to nexus as a peer of its own (see wsPeer):
// it refuses what nexus cannot digest or must not pile up (guard), bounds
// what waits for a client in messages and bytes, and shows every message,
// inline, to the connection's observer. What the observer sees goes to a
// CallSession; this package never imports Prometheus.
package router

import (
	"crypto/tls"
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
	"github.com/php-wamp-observer/php-wamp-observer/wampjson"
)

// DefaultOutQueueSize is the per-client queue of messages waiting to be
// written. nexus defaults to 64, and refuses calls ("callee blocked") once a
// callee's queue is full; 1024 lets one callee serve 100 busy callers with
// room to spare, at 16 KiB of channel per connection.
const DefaultOutQueueSize = 1024

// DefaultOutQueueBytes bounds, in bytes as encoded for the wire, what may
// wait to be written to one client. The message bound alone let a callee
// that never reads hold 1,024 INVOCATIONs of 1 MiB each (1.4 GiB RSS). 4 MiB
// is four messages of the largest size a client may send (-max-message) and
// about 20,000 typical RPC messages, more than the count bound lets queue;
// a single larger message is still let through to an otherwise empty queue.
// Add the kernel's socket buffers (a few MiB on Linux) to get what one
// client that stops reading can cost.
const DefaultOutQueueBytes = 4 << 20

// DefaultOutQueueBytesTotal bounds what waits to be written over all
// clients: without it, -max-conns clients that stop reading could hold
// -max-conns × DefaultOutQueueBytes (16 GiB). At the bound, a client whose
// frame does not fit is a slow consumer like any other, so the memory goes
// back as soon as the clients holding it are dropped.
const DefaultOutQueueBytesTotal = 512 << 20

// DefaultWriteTimeout bounds one WebSocket write to a client. A write that
// does not complete in time makes the client a slow consumer.
const DefaultWriteTimeout = 10 * time.Second

// DefaultKeepAlive is how often the front pings a client it has heard
// nothing from; a client that sends nothing, not even a pong, for twice
// this long is disconnected. Without it, a client that vanishes without a
// FIN stays a session until TCP gives up (hours).
const DefaultKeepAlive = 30 * time.Second

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
	// A Payload PassThru option that is not a string (nexus would panic),
	// or one in a testament: a CALL gets ERROR, a PUBLISH an ERROR if
	// acknowledged, a YIELD ABORT and the connection is closed.
	RejectInvalidOption = "invalid_option"
	RejectSlowConsumer  = "slow_consumer"     // out queue full or a write timed out; the connection is closed
	RejectKeepAlive     = "keepalive_timeout" // nothing, not even a pong, within twice the keep-alive; closed
	RejectConnections   = "too_many_connections"
	RejectCallsInFlight = "calls_in_flight" // a CALL over the session's bound; answered with ErrLimitExceeded
	RejectTestament     = "testament"       // an add_testament over the session's bound; ErrLimitExceeded
	RejectRegistrations = "registrations"   // a REGISTER over MaxRegistrations; ErrLimitExceeded
	RejectCalleeBlocked = "callee_blocked"  // an INVOCATION for a callee whose queue is half full; its caller gets wamp.error.network_failure
	RejectSubscriptions = "subscriptions"   // a SUBSCRIBE over MaxSubscriptions; ErrLimitExceeded
	RejectURITooLong    = "uri_too_long"    // a REGISTER or SUBSCRIBE URI over MaxURILen; wamp.error.invalid_uri
	RejectHost          = "host"            // a Host header not allowed on a loopback listener (HTTP 403)
	// With an upstream router (Config.Upstream): it could not be reached,
	// failed the relay's handshake or chose a subprotocol the client did
	// not offer (the client gets HTTP 502); or it
	// went away under a session, which is then closed with close code 1011
	// (Internal Error) naming the upstream.
	RejectUpstreamUnavailable = "upstream_unavailable"
	RejectUpstreamLost        = "upstream_lost"
	// With an upstream: it refused the relay's handshake with a 4xx
	// (most likely for the client's Authorization or Cookie), which the
	// client gets.
	RejectUpstreamRefused = "upstream_refused"
)

// RejectReasons lists every reason, so that their counters can start at 0.
func RejectReasons() []string {
	return []string{RejectOrigin, RejectSubprotocol, RejectHandshake, RejectJoin, RejectTooLarge, RejectUndecodable,
		RejectInvalidOption, RejectSlowConsumer, RejectKeepAlive, RejectConnections, RejectCallsInFlight, RejectTestament,
		RejectRegistrations, RejectSubscriptions, RejectURITooLong, RejectCalleeBlocked,
		RejectHost, RejectUpstreamUnavailable, RejectUpstreamLost, RejectUpstreamRefused}
}

// Config configures a Router.
type Config struct {
	// Realm is the realm clients join: anonymously, or with Credentials
	// when there are any. It must not be empty.
	Realm string
	// OtherRealms are further realms, served alike.
	OtherRealms []string
	// Upstream, a ws:// or wss:// URL, relays every client connection to
	// that WAMP router instead of the embedded one (see relay): the
	// upstream serves the realms and authenticates, so there must be no
	// Credentials; Realm and OtherRealms only name what the observer
	// counts apart. The front's limits, policies and observer apply as
	// in the embedded router, the out queue towards the client included;
	// towards the upstream a relay holds one message.
	Upstream string
	// UpstreamTLS configures TLS to a wss:// upstream; nil: Go's defaults,
	// with the system's roots (SSL_CERT_FILE and SSL_CERT_DIR name others).
	UpstreamTLS *tls.Config
	// OutQueueSize is the per-client outbound queue, in messages;
	// DefaultOutQueueSize when 0.
	OutQueueSize int
	// OutQueueBytes bounds the same queue in bytes; DefaultOutQueueBytes
	// when 0. A client whose queue is full either way is a slow consumer:
	// it is disconnected.
	OutQueueBytes int
	// OutQueueBytesTotal bounds those queues over all clients;
	// DefaultOutQueueBytesTotal when 0.
	OutQueueBytesTotal int
	// WriteTimeout bounds one write to a client; DefaultWriteTimeout when
	// 0. A client that does not take a message in time is a slow consumer.
	WriteTimeout time.Duration
	// KeepAlive is the ping interval for idle clients; DefaultKeepAlive
	// when 0, off when negative.
	KeepAlive time.Duration
	// MaxCallsInFlight bounds a session's unanswered CALLs;
	// DefaultMaxCallsInFlight when 0.
	MaxCallsInFlight int
	// MaxTestaments and MaxTestamentBytes bound a session's testaments
	// per scope; DefaultMaxTestaments and DefaultMaxTestamentBytes when 0.
	MaxTestaments, MaxTestamentBytes int
	// MaxCallsInFlightTotal and MaxHeldURIBytesTotal bound, over all
	// sessions, the unanswered CALLs and the URI bytes of registrations
	// and subscriptions nexus holds; DefaultMaxCallsInFlightTotal and
	// DefaultMaxHeldURIBytesTotal when 0.
	MaxCallsInFlightTotal, MaxHeldURIBytesTotal int
	// AllowOrigins are glob patterns (path.Match syntax, case-insensitive)
	// for the host[:port] of browser Origins to accept beyond the default
	// policy. See originPolicy.
	AllowOrigins []string
	// OpenSession starts the observation of a session. Nil turns the
	// observer off: each connection is still a peer of the front, with its
	// guard and bounded queues, but nothing is shown to an observer.
	OpenSession OpenSessionFunc
	// Traffic observes messages, sessions and pub/sub per realm, when
	// OpenSession is set; nil observes none of it.
	Traffic TrafficFunc
	// MaxMessageSize bounds a message from a client, in bytes;
	// DefaultMaxMessageSize when 0.
	MaxMessageSize int64
	// Credentials, when given, replace anonymous access: clients must
	// authenticate with WAMP ticket or WAMP-CRA. See LoadCredentials.
	Credentials []Credential
	// MaxConns bounds the connections open at once on a listener wrapped
	// with Router.LimitListener; DefaultMaxConns when 0.
	MaxConns int
	// ListenAddr is the address the WAMP listener is bound to. On a
	// loopback address only loopback names are accepted in the Host header
	// (against DNS rebinding), plus AllowHosts. See hostPolicy.
	ListenAddr string
	// AllowHosts are glob patterns (path.Match syntax, case-insensitive)
	// for Host headers to accept beyond loopback names on a loopback
	// listener.
	AllowHosts []string
	// Rejected is told of each rejection, by reason (the Reject
	// constants). It must be cheap and safe for concurrent use.
	Rejected func(reason string)
	// Logger receives the router's and nexus's logs; slog.Default when nil.
	Logger *slog.Logger
}

// Router is an embedded nexus router and the WebSocket front to it. It is
// an http.Handler: every path upgrades to WAMP over WebSocket.
type Router struct {
	nexus      nexus.Router // nil with an upstream
	upgrader   websocket.Upgrader
	hostOK     func(*http.Request) bool
	maxConns   int
	peer       peerConfig
	maxMessage int64
	open       OpenSessionFunc
	traffic    TrafficFunc
	rejected   func(reason string)
	log        *slog.Logger
	refusals   *ratelog.Logger

	nexusLog nexusLogger

	closing   atomic.Bool // set before nexus closes the sessions
	closeOnce sync.Once

	// With an upstream: its URL, how to dial it, and the relays open.
	upstreamURL string
	dialer      websocket.Dialer
	relaysMu    sync.Mutex
	relays      map[*relay]struct{}
	relaysWG    sync.WaitGroup
}

// subprotocols maps the WAMP WebSocket subprotocols to their payload types
// and serializers. Serializers are stateless and shared. JSON's is
// nexus's, made fast for RPC and pub/sub traffic (see wampjson).
var subprotocols = []struct {
	name        string
	payloadType int
	serializer  serialize.Serializer
}{
	{"wamp.2.json", websocket.TextMessage, &wampjson.Serializer{}},
	{"wamp.2.msgpack", websocket.BinaryMessage, &serialize.MessagePackSerializer{}},
	{"wamp.2.cbor", websocket.BinaryMessage, &serialize.CBORSerializer{}},
}

// New starts an embedded nexus router with one realm, open to anonymous
// clients unless cfg has Credentials. Close it when done.
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
	for _, d := range []struct {
		name  string
		field *int
		def   int
	}{
		{"out queue bytes", &cfg.OutQueueBytes, DefaultOutQueueBytes},
		{"out queue bytes total", &cfg.OutQueueBytesTotal, DefaultOutQueueBytesTotal},
		{"max connections", &cfg.MaxConns, DefaultMaxConns},
		{"max calls in flight", &cfg.MaxCallsInFlight, DefaultMaxCallsInFlight},
		{"max testaments", &cfg.MaxTestaments, DefaultMaxTestaments},
		{"max testament bytes", &cfg.MaxTestamentBytes, DefaultMaxTestamentBytes},
		{"max calls in flight in all", &cfg.MaxCallsInFlightTotal, DefaultMaxCallsInFlightTotal},
		{"max held URI bytes in all", &cfg.MaxHeldURIBytesTotal, DefaultMaxHeldURIBytesTotal},
	} {
		if *d.field == 0 {
			*d.field = d.def
		}
		if *d.field < 1 {
			return nil, fmt.Errorf("router: %s must be positive, got %d", d.name, *d.field)
		}
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("router: write timeout must be positive, got %v", cfg.WriteTimeout)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
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
	hostOK, err := hostPolicy(cfg.ListenAddr, cfg.AllowHosts)
	if err != nil {
		return nil, err
	}
	if cfg.Upstream != "" {
		if err := checkUpstreamURL(cfg.Upstream); err != nil {
			return nil, err
		}
		if len(cfg.Credentials) > 0 {
			return nil, errors.New("router: with an upstream router, authentication is the upstream's: give no credentials")
		}
	}
	var realms []*nexus.RealmConfig
	for _, uri := range append([]string{cfg.Realm}, cfg.OtherRealms...) {
		if uri == "" {
			return nil, errors.New("router: realm must not be empty")
		}
		realm := &nexus.RealmConfig{
			URI:           wamp.URI(uri),
			AnonymousAuth: len(cfg.Credentials) == 0,
			AllowDisclose: true,
		}
		if len(cfg.Credentials) > 0 {
			realm.Authenticators = authenticators(cfg.Credentials)
		}
		realms = append(realms, realm)
	}
	nexusLog := newNexusLogger(cfg.Logger)
	var nx nexus.Router
	if cfg.Upstream == "" {
		var err error
		if nx, err = nexus.NewRouter(&nexus.Config{RealmConfigs: realms}, nexusLog); err != nil {
			return nil, fmt.Errorf("start nexus router: %w", err)
		}
	}
	r := &Router{
		nexus:       nx,
		upstreamURL: cfg.Upstream,
		relays:      map[*relay]struct{}{},
		dialer: websocket.Dialer{
			HandshakeTimeout: upstreamDialTimeout,
			Proxy:            http.ProxyFromEnvironment,
			TLSClientConfig:  cfg.UpstreamTLS,
		},
		maxMessage: cfg.MaxMessageSize,
		hostOK:     hostOK,
		maxConns:   cfg.MaxConns,
		open:       cfg.OpenSession,
		traffic:    cfg.Traffic,
		rejected:   cfg.Rejected,
		log:        cfg.Logger,
		refusals:   ratelog.New(cfg.Logger, time.Second, nil),
		nexusLog:   nexusLog,
	}
	r.peer = peerConfig{
		outQueue:          cfg.OutQueueSize,
		outQueueBytes:     cfg.OutQueueBytes,
		maxQueuedTotal:    int64(cfg.OutQueueBytesTotal),
		writeTimeout:      cfg.WriteTimeout,
		keepAlive:         max(cfg.KeepAlive, 0),
		maxInFlight:       cfg.MaxCallsInFlight,
		maxTestaments:     cfg.MaxTestaments,
		maxTestamentBytes: cfg.MaxTestamentBytes,
		totals:            guardTotals{maxCalls: int64(cfg.MaxCallsInFlightTotal), maxURIBytes: int64(cfg.MaxHeldURIBytesTotal)},
		rejected:          cfg.Rejected,
		shutdown:          &r.closing,
		log:               r.refusals,
		slowLog:           ratelog.New(cfg.Logger, time.Second, nil),
		batches:           newChunkPool(),
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
		if r.nexus != nil {
			r.nexus.Close()
		} else {
			r.closeRelays()
		}
		// What the rate limits held back is logged last.
		r.refusals.Close()
		r.peer.slowLog.Close()
		r.nexusLog.log.Close()
	})
}

// ServeHTTP upgrades the request to a WebSocket and attaches it to the
// router. It returns when the client has sent HELLO and been answered.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.hostOK(req) {
		r.rejected(RejectHost)
		r.refusals.Log(slog.LevelWarn, "refused WebSocket connection: "+RejectHost, "refused WebSocket connection",
			slog.String("rejection", RejectHost), slog.Int("status", http.StatusForbidden),
			slog.String("remote", req.RemoteAddr), slog.String("host", req.Host),
			slog.String("reason", "Host is not a loopback name on a loopback listener"))
		http.Error(w, "Forbidden: this router accepts loopback host names only", http.StatusForbidden)
		return
	}
	// gorilla accepts a handshake with no common subprotocol and leaves
	// the choice empty; WAMP requires one, so refuse it here with a reason
	// the client can read instead of upgrading and hanging up.
	if !offersWAMP(websocket.Subprotocols(req)) {
		r.refuse(w, req, http.StatusBadRequest,
			errors.New("no supported WebSocket subprotocol offered; use one of "+strings.Join(r.upgrader.Subprotocols, ", ")))
		return
	}
	if r.upstreamURL != "" {
		r.serveRelay(w, req)
		return
	}
	bw := &batchingWriter{ResponseWriter: w, pool: r.peer.batches, slack: r.peer.writeTimeout / deadlineSlack, total: &r.peer.queuedTotal}
	conn, err := r.upgrader.Upgrade(bw, req, nil)
	if err != nil {
		return // the upgrader has answered and r.refuse has logged
	}
	r.attach(conn, bw.conn)
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

func (r *Router) attach(conn *websocket.Conn, bc *batchConn) {
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
		obs = newConnObserver(r.open, r.traffic)
	}
	peer := newWSPeer(conn, bc, serializer, payloadType, obs, &r.peer)
	if err := r.nexus.AttachClient(peer, nil); err != nil {
		r.rejected(RejectJoin)
		r.refusals.Warn("client could not join", slog.String("remote", conn.RemoteAddr().String()), slog.Any("err", err))
	}
}
