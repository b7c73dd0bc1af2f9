package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
)

// upstreamDialTimeout bounds connecting to the upstream router, its
// WebSocket handshake included. The client waits for it: its own handshake
// is answered only once the upstream has chosen the subprotocol.
const upstreamDialTimeout = 5 * time.Second

// closeUpstreamLost is the close code a relay sends its client when the
// upstream router is lost: 1011, "Internal Error", with a reason naming the
// upstream. 1014, "Bad Gateway", says it better, but is newer than many
// clients: gorilla's (nexus's client among them) fail on it as a protocol
// error.
const closeUpstreamLost = websocket.CloseInternalServerErr

// Headers of the client's handshake that a relay passes on to the upstream:
// what a router may authenticate or log a client by beyond its HELLO. The
// Origin is not among them: the front has applied its own origin policy.
var relayedHeaders = []string{"Authorization", "Cookie", "User-Agent"}

// relay is one client's WebSocket connection relayed to the upstream
// router (Config.Upstream) over a WebSocket of its own, with the
// subprotocol the upstream chose from those the client offered. Every
// message is passed on as it was read, in its frame type, bytes unchanged;
// on the way it is decoded and shown to the observer, exactly as in the
// embedded router, and the guard judges what the client sends: a message it
// refuses is answered by the front and not passed on.
//
// Two goroutines serve a relay, one per direction. Each reads a message,
// observes it and writes it to the other side before it reads the next, so
// what waits in the proxy is one message per direction: a side that is slow
// to read holds up only the other side of its own relay, through TCP, as
// it would hold up a router it were connected to directly. A write that
// does not complete within the write timeout ends the relay (a client that
// does not read is a slow consumer, as in the embedded router), and so
// does a side that sends nothing, not even a pong, for twice the
// keep-alive interval; a third goroutine pings both sides when they are
// quiet.
//
// The first side to fail or close decides how the relay ends (see end):
// its close code passes to the other side, or, when the upstream is lost,
// the client gets closeUpstreamLost (1011). Both connections are closed within
// flushTimeout whatever the peers do.
type relay struct {
	client, upstream *websocket.Conn
	clientNet        *relayConn // under client
	upstreamNet      *relayConn // under upstream (and its TLS, for wss://)
	serializer       serialize.Serializer
	payloadType      int           // of the front's own messages to either side
	obs              *connObserver // nil when not observing
	guard            *guard
	cfg              *peerConfig
	done             func(*relay) // the router forgets the relay

	// Data messages are written to each side by one goroutine at a time
	// (gorilla allows one writer); control frames need no lock.
	clientW, upstreamW relayWriter

	clientHeard, upstreamHeard atomic.Int64 // UnixNano of the last frame or pong read

	// inSession is true from WELCOME until a GOODBYE or ABORT either way.
	inSession atomic.Bool

	ending   atomic.Bool   // end is deciding how the relay ends
	stopping chan struct{} // closed by end: the pinger stops
	hardStop *time.Timer   // closes both connections flushTimeout after end
	decided  chan struct{} // closed when end has told both sides (hardStop is set)
	exited   atomic.Int32  // directions done
	finished chan struct{} // closed when both connections are closed
}

// relayWriter writes data messages to one side of a relay, each within the
// write timeout.
type relayWriter struct {
	mu    sync.Mutex
	conn  *websocket.Conn
	moved time.Time // when the write deadline last moved; under mu
}

// write writes one message. Like the embedded peer's, the deadline moves
// only when it would move by more than 1/deadlineSlack of the timeout.
func (w *relayWriter) write(typ int, b []byte, timeout time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now := time.Now(); now.Sub(w.moved) >= timeout/deadlineSlack {
		w.moved = now
		_ = w.conn.SetWriteDeadline(now.Add(timeout))
	}
	return w.conn.WriteMessage(typ, b)
}

// The sides of a relay.
type side int

const (
	clientSide side = iota
	upstreamSide
)

// relayEnd is why a relay ends, as end tells both peers.
type relayEnd struct {
	by       side   // the side that failed or closed first
	code     int    // the close code the other side gets, and by when it can still take one
	text     string // the close reason with it
	closeBy  bool   // by gets a close frame too (code byCode, text byText)
	byCode   int
	byText   string
	shutdown bool // the router is shutting down: GOODBYE to both first
}

// serveRelay connects the client to the upstream router and relays its
// connection there. The handshake with the client completes only once the
// upstream has accepted the relay's, with the subprotocol the upstream
// chose; an upstream that cannot be reached gets the client an HTTP 502
// with the reason.
func (r *Router) serveRelay(w http.ResponseWriter, req *http.Request) {
	if !websocket.IsWebSocketUpgrade(req) {
		r.refuse(w, req, http.StatusBadRequest, errors.New("not a WebSocket handshake"))
		return
	}
	// Checked before dialing, so that refused browsers cost the upstream
	// nothing; the upgrader checks again.
	if !r.upgrader.CheckOrigin(req) {
		r.refuse(w, req, http.StatusForbidden, errors.New("request origin not allowed"))
		return
	}
	var offered []string
	for _, o := range websocket.Subprotocols(req) {
		if _, _, ok := serializerOf(o); ok {
			offered = append(offered, o)
		}
	}
	header := http.Header{}
	for _, h := range relayedHeaders {
		if v := req.Header.Values(h); len(v) > 0 {
			header[h] = v
		}
	}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		forwarded := host
		if prior := req.Header.Get("X-Forwarded-For"); prior != "" {
			forwarded = prior + ", " + host
		}
		header.Set("X-Forwarded-For", forwarded)
	}
	ctx, cancel := context.WithTimeout(req.Context(), upstreamDialTimeout)
	defer cancel()
	slack := r.peer.writeTimeout / deadlineSlack
	upNet := &relayDialer{slack: slack}
	dialer := r.dialer
	dialer.Subprotocols = offered
	dialer.NetDialContext = upNet.dial
	up, resp, err := dialer.DialContext(ctx, r.upstreamURL, header)
	if err == nil && up.Subprotocol() == "" {
		up.Close()
		err = errors.New("the upstream chose no WAMP subprotocol")
	}
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		r.rejected(RejectUpstreamUnavailable)
		r.refusals.Log(slog.LevelWarn, "refused WebSocket connection: "+RejectUpstreamUnavailable, "refused WebSocket connection",
			slog.String("rejection", RejectUpstreamUnavailable), slog.String("remote", req.RemoteAddr),
			slog.String("upstream", r.upstreamURL), slog.Any("err", err))
		http.Error(w, "Bad Gateway: the upstream WAMP router cannot be reached: "+err.Error(), http.StatusBadGateway)
		return
	}
	upgrader := r.upgrader
	upgrader.Subprotocols = []string{up.Subprotocol()}
	// A read buffer of its own, so that gorilla reads through the
	// relayConn rather than the server's buffered reader under it.
	upgrader.ReadBufferSize = 4 << 10
	rw := &relayingWriter{ResponseWriter: w, slack: slack}
	conn, err := upgrader.Upgrade(rw, req, nil)
	if err != nil {
		up.Close() // the upgrader has answered and r.refuse has logged
		return
	}
	r.startRelay(conn, rw.conn, up, upNet.conn)
}

// serializerOf is the serializer of a WAMP subprotocol, and the frame type
// of its messages.
func serializerOf(name string) (serialize.Serializer, int, bool) {
	for _, p := range subprotocols {
		if p.name == name {
			return p.serializer, p.payloadType, true
		}
	}
	return nil, 0, false
}

// startRelay relays conn to up until either side ends, or the router
// closes; connNet and upNet are their network connections.
func (r *Router) startRelay(conn *websocket.Conn, connNet *relayConn, up *websocket.Conn, upNet *relayConn) {
	// What is held for one side goes out before the other is read.
	connNet.out, upNet.out = upNet, connNet
	serializer, payloadType, _ := serializerOf(up.Subprotocol())
	conn.SetReadLimit(r.maxMessage)
	up.SetReadLimit(r.maxMessage)
	rl := &relay{
		client:      conn,
		upstream:    up,
		clientNet:   connNet,
		upstreamNet: upNet,
		serializer:  serializer,
		payloadType: payloadType,
		guard:       newGuard(r.peer.maxInFlight, r.peer.maxTestaments, r.peer.maxTestamentBytes).sharing(&r.peer.totals),
		cfg:         &r.peer,
		clientW:     relayWriter{conn: conn},
		upstreamW:   relayWriter{conn: up},
		stopping:    make(chan struct{}),
		decided:     make(chan struct{}),
		finished:    make(chan struct{}),
	}
	if r.open != nil {
		rl.obs = newConnObserver(r.open, r.traffic)
	}
	if !r.track(rl) {
		// The router closed while this one dialed.
		rl.end(relayEnd{shutdown: true, code: websocket.CloseGoingAway, text: "router shutting down",
			closeBy: true, byCode: websocket.CloseGoingAway, byText: "router shutting down"})
	}
	rl.start()
}

// track adds rl to the relays Close ends; false once the router is closing.
func (r *Router) track(rl *relay) bool {
	r.relaysMu.Lock()
	defer r.relaysMu.Unlock()
	if r.closing.Load() {
		rl.done = func(*relay) {}
		return false
	}
	rl.done = r.untrack
	r.relaysWG.Add(1)
	r.relays[rl] = struct{}{}
	return true
}

func (r *Router) untrack(rl *relay) {
	r.relaysMu.Lock()
	delete(r.relays, rl)
	r.relaysMu.Unlock()
	r.relaysWG.Done()
}

// closeRelays ends every relay: GOODBYE to the client and the upstream of
// each session, then close frames both ways, and waits until every
// connection is closed (within flushTimeout).
func (r *Router) closeRelays() {
	r.relaysMu.Lock()
	relays := make([]*relay, 0, len(r.relays))
	for rl := range r.relays {
		relays = append(relays, rl)
	}
	r.relaysMu.Unlock()
	// At once: a relay with a peer that does not read takes up to
	// flushTimeout to end.
	for _, rl := range relays {
		go rl.end(relayEnd{shutdown: true, code: websocket.CloseGoingAway, text: "router shutting down",
			closeBy: true, byCode: websocket.CloseGoingAway, byText: "router shutting down"})
	}
	r.relaysWG.Wait()
}

func (rl *relay) start() {
	now := time.Now().UnixNano()
	rl.clientHeard.Store(now)
	rl.upstreamHeard.Store(now)
	keepAlive := rl.cfg.keepAlive
	for _, s := range []struct {
		conn  *websocket.Conn
		heard *atomic.Int64
	}{{rl.client, &rl.clientHeard}, {rl.upstream, &rl.upstreamHeard}} {
		if keepAlive > 0 {
			_ = s.conn.SetReadDeadline(time.Now().Add(2 * keepAlive))
			s.conn.SetPongHandler(func(string) error { rl.heard(s.conn, s.heard); return nil })
		}
		// gorilla answers a close frame with the same code; the relay
		// passes it on itself (see end), before the reader sees it.
	}
	go rl.fromClient()
	go rl.fromUpstream()
	if keepAlive > 0 {
		go rl.ping()
	}
}

// heard notes a frame from conn's peer and moves its read deadline, within
// deadlineSlack as the embedded peer does.
func (rl *relay) heard(conn *websocket.Conn, last *atomic.Int64) {
	now := time.Now()
	prev := last.Swap(now.UnixNano())
	if k := rl.cfg.keepAlive; k > 0 && now.Sub(time.Unix(0, prev)) >= k/deadlineSlack {
		_ = conn.SetReadDeadline(now.Add(2 * k))
	}
}

// ping pings a side that has been quiet for half the keep-alive interval,
// until the relay ends.
func (rl *relay) ping() {
	t := time.NewTicker(rl.cfg.keepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, s := range []struct {
				conn  *websocket.Conn
				heard *atomic.Int64
			}{{rl.client, &rl.clientHeard}, {rl.upstream, &rl.upstreamHeard}} {
				if time.Since(time.Unix(0, s.heard.Load())) >= rl.cfg.keepAlive/2 {
					_ = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(rl.cfg.writeTimeout))
				}
			}
		case <-rl.stopping:
			return
		}
	}
}

// fromClient relays what the client sends, until either side ends.
func (rl *relay) fromClient() {
	defer rl.exit()
	for {
		typ, buf, err := readMessage(rl.client, &rl.cfg.reads)
		if isFlushError(err) {
			rl.end(rl.upstreamWriteFailed(err))
			return
		}
		if err != nil {
			rl.end(rl.clientFailed(err))
			return
		}
		rl.heard(rl.client, &rl.clientHeard)
		pass, abort := rl.judge(*buf)
		if pass {
			err = rl.upstreamW.write(typ, *buf, rl.cfg.writeTimeout)
		}
		rl.cfg.reads.put(buf)
		switch {
		case abort:
			rl.end(relayEnd{by: clientSide, code: websocket.CloseNormalClosure, text: "client aborted by the router",
				closeBy: true, byCode: websocket.CloseNormalClosure, byText: "aborted"})
			return
		case err != nil:
			rl.end(rl.upstreamWriteFailed(err))
			return
		}
	}
}

// judge decodes one message from the client, shows it to the observer and
// lets the guard judge it, as the embedded peer's decode does; it answers
// the client itself for what the guard refuses. pass tells whether the
// message goes on to the upstream, abort whether the front aborted the
// session. A message the relay cannot decode is counted and passed on: the
// upstream judges it as it would without the relay.
func (rl *relay) judge(b []byte) (pass, abort bool) {
	msg, err := rl.serializer.Deserialize(b)
	if err != nil {
		rl.cfg.rejected(RejectUndecodable)
		return true, false
	}
	if rl.obs != nil {
		rl.obs.received(msg, len(b))
	}
	if v := rl.guard.inbound(msg, len(b)); !v.passed() {
		rl.cfg.rejected(v.reason)
		rl.cfg.log.Log(slog.LevelWarn, "refused a message: "+v.reason, "refused a message", slog.String("type", msg.MessageType().String()),
			slog.String("reason", v.reason), slog.String("remote", rl.client.RemoteAddr().String()))
		if v.reply == nil {
			return false, false
		}
		_, call := msg.(*wamp.Call)
		if _, answered := v.reply.(*wamp.Error); call && answered && rl.obs != nil {
			rl.obs.fromClient(msg) // an error answer, counted like any other
		}
		if err := rl.toClient(v.reply); err != nil {
			return false, true
		}
		_, abort := v.reply.(*wamp.Abort)
		return false, abort
	}
	switch msg.(type) {
	case *wamp.Goodbye, *wamp.Abort:
		rl.inSession.Store(false)
	}
	if rl.obs != nil {
		rl.obs.fromClient(msg)
	}
	return true, false
}

// toClient encodes, observes and writes a message of the front's own to
// the client.
func (rl *relay) toClient(msg wamp.Message) error {
	b, err := rl.serializer.Serialize(msg)
	if err != nil {
		return fmt.Errorf("encode %v for a client: %w", msg.MessageType(), err)
	}
	rl.outbound(msg, len(b))
	return rl.clientW.write(rl.payloadType, b, rl.cfg.writeTimeout)
}

// outbound notes a message on its way to the client: the guard's and the
// observer's view of it.
func (rl *relay) outbound(msg wamp.Message, n int) {
	switch msg.(type) {
	case *wamp.Welcome:
		rl.inSession.Store(true)
	case *wamp.Goodbye, *wamp.Abort:
		rl.inSession.Store(false)
	}
	rl.guard.outbound(msg)
	if rl.obs != nil {
		rl.obs.sent(msg, n)
		rl.obs.toClient(msg)
	}
}

// fromUpstream relays what the upstream sends, until either side ends.
func (rl *relay) fromUpstream() {
	defer rl.exit()
	for {
		typ, buf, err := readMessage(rl.upstream, &rl.cfg.reads)
		if isFlushError(err) {
			rl.end(rl.clientWriteFailed(err))
			return
		}
		if err != nil {
			rl.end(rl.upstreamFailed(err))
			return
		}
		rl.heard(rl.upstream, &rl.upstreamHeard)
		if msg, err := rl.serializer.Deserialize(*buf); err == nil {
			// Observed before it is written: the client's answer to a
			// WELCOME (its first CALL) must find the session open.
			rl.outbound(msg, len(*buf))
		} else {
			rl.cfg.rejected(RejectUndecodable)
		}
		err = rl.clientW.write(typ, *buf, rl.cfg.writeTimeout)
		rl.cfg.reads.put(buf)
		if err != nil {
			rl.end(rl.clientWriteFailed(err))
			return
		}
	}
}

// clientFailed is how the relay ends when reading from the client failed.
func (rl *relay) clientFailed(err error) relayEnd {
	e := relayEnd{by: clientSide, code: websocket.CloseGoingAway, text: "client connection lost"}
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure: // gorilla's for a connection cut short
		// The client closed: its code goes on (gorilla has answered it).
		e.code, e.text = sendableCloseCode(ce.Code), ce.Text
	case errors.Is(err, websocket.ErrReadLimit):
		rl.dropClient(RejectTooLarge, "a message over the size limit")
		e.closeBy, e.byCode, e.byText = true, websocket.CloseMessageTooBig, "message too large"
	case errors.As(err, &ne) && ne.Timeout() && !rl.ending.Load():
		rl.dropClient(RejectKeepAlive, "no message and no pong within twice the keep-alive interval")
		e.closeBy, e.byCode, e.byText = true, websocket.CloseGoingAway, "keep-alive timeout"
	}
	return e
}

// clientWriteFailed is how the relay ends when a write to the client
// failed: a client that does not take a message in time is a slow consumer.
func (rl *relay) clientWriteFailed(err error) relayEnd {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !rl.ending.Load() {
		rl.dropClient(RejectSlowConsumer, "a write did not complete within the write timeout")
	}
	return relayEnd{by: clientSide, code: websocket.CloseGoingAway, text: "client connection lost"}
}

// upstreamFailed is how the relay ends when reading from the upstream
// failed. The upstream's own close passes to the client unchanged; it is
// counted as an upstream lost when it leaves the client's session open.
func (rl *relay) upstreamFailed(err error) relayEnd {
	e := relayEnd{by: upstreamSide, code: closeUpstreamLost, text: "upstream router connection lost"}
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		e.code, e.text = sendableCloseCode(ce.Code), ce.Text
	case errors.Is(err, websocket.ErrReadLimit):
		rl.cfg.rejected(RejectTooLarge)
		e.code, e.text = websocket.CloseMessageTooBig, "upstream message too large"
		e.closeBy, e.byCode, e.byText = true, websocket.CloseMessageTooBig, "message too large"
		return e
	case errors.As(err, &ne) && ne.Timeout():
		e.text = "upstream router not responding"
	}
	if rl.inSession.Load() && !rl.ending.Load() {
		rl.upstreamLost(err)
	}
	return e
}

// upstreamWriteFailed is how the relay ends when a write to the upstream
// failed.
func (rl *relay) upstreamWriteFailed(err error) relayEnd {
	if !rl.ending.Load() {
		rl.upstreamLost(err)
	}
	return relayEnd{by: upstreamSide, code: closeUpstreamLost, text: "upstream router connection lost"}
}

func (rl *relay) upstreamLost(err error) {
	rl.cfg.rejected(RejectUpstreamLost)
	rl.cfg.slowLog.Log(slog.LevelWarn, "closing a client: "+RejectUpstreamLost, "closing a client",
		slog.String("reason", RejectUpstreamLost), slog.String("remote", rl.client.RemoteAddr().String()), slog.Any("err", err))
}

// dropClient counts and logs a client the front disconnects.
func (rl *relay) dropClient(reason, why string) {
	rl.cfg.rejected(reason)
	rl.cfg.slowLog.Log(slog.LevelWarn, "disconnecting a client: "+reason, "disconnecting a client",
		slog.String("reason", reason), slog.String("why", why), slog.String("remote", rl.client.RemoteAddr().String()))
}

// sendableCloseCode is code as a close frame may carry it: the codes that
// say no frame came (1005, 1006, 1015) are never sent.
func sendableCloseCode(code int) int {
	switch code {
	case websocket.CloseNoStatusReceived:
		return websocket.CloseNormalClosure
	case websocket.CloseTLSHandshake:
		return websocket.CloseGoingAway
	}
	return code
}

// end decides, once, how the relay ends: on shutdown each side of a session
// gets GOODBYE, then the side that did not end it gets a close frame with
// e's code (and the side that did when e says so), and both connections
// are closed once both directions are done, or flushTimeout from now
// whatever the peers do. Safe from any goroutine.
func (rl *relay) end(e relayEnd) {
	if !rl.ending.CompareAndSwap(false, true) {
		return
	}
	defer close(rl.decided)
	close(rl.stopping)
	flushBy := time.Now().Add(flushTimeout)
	rl.hardStop = time.AfterFunc(flushTimeout, rl.closeBoth)
	// What is held goes out now, and what follows at once.
	_ = rl.clientNet.finish(flushBy)
	_ = rl.upstreamNet.finish(flushBy)
	if e.shutdown && rl.inSession.Load() {
		bye := &wamp.Goodbye{Reason: wamp.CloseSystemShutdown, Details: wamp.Dict{}}
		// A side busy with a write to a slow peer gets no GOODBYE: the
		// writer holds the lock until its deadline.
		if rl.clientW.mu.TryLock() {
			if b, err := rl.serializer.Serialize(bye); err == nil {
				rl.outbound(bye, len(b))
				_ = rl.clientW.conn.SetWriteDeadline(flushBy)
				_ = rl.clientW.conn.WriteMessage(rl.payloadType, b)
			}
			rl.clientW.mu.Unlock()
		}
		if rl.upstreamW.mu.TryLock() {
			if b, err := rl.serializer.Serialize(bye); err == nil {
				_ = rl.upstreamW.conn.SetWriteDeadline(flushBy)
				_ = rl.upstreamW.conn.WriteMessage(rl.payloadType, b)
			}
			rl.upstreamW.mu.Unlock()
		}
	}
	other, by := rl.upstream, rl.client
	if e.by == upstreamSide {
		other, by = rl.client, rl.upstream
	}
	_ = other.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(e.code, e.text), flushBy)
	if e.closeBy {
		_ = by.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(e.byCode, e.byText), flushBy)
	}
	// Each side's reader ends with the close frame it gets back, or at
	// the deadline.
	_ = rl.client.SetReadDeadline(flushBy)
	_ = rl.upstream.SetReadDeadline(flushBy)
}

// exit is each direction's last step: the second one closes both
// connections and ends the observation.
func (rl *relay) exit() {
	if rl.exited.Add(1) < 2 {
		return
	}
	<-rl.decided // each direction called end before it got here
	rl.hardStop.Stop()
	rl.closeBoth()
	if rl.obs != nil {
		rl.obs.endSession(CloseConnectionLost)
		rl.obs.closeTraffic()
	}
	rl.guard.reset()
	close(rl.finished)
	rl.done(rl)
}

func (rl *relay) closeBoth() {
	rl.client.Close()
	rl.upstream.Close()
}

// upstreamURL checks an upstream router's URL: ws:// or wss://, with a
// host.
func checkUpstreamURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("router: upstream URL: %w", err)
	}
	if s := strings.ToLower(u.Scheme); s != "ws" && s != "wss" || u.Host == "" {
		return fmt.Errorf("router: upstream URL %q must be ws:// or wss:// with a host", raw)
	}
	return nil
}
