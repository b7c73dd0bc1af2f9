package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
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
// refuses is answered by the front and not passed on, and one it cannot
// decode is dropped, so that nothing passes the guard unseen.
//
// Four goroutines serve a relay: one per direction, a writer for the
// client and a pinger. Each direction reads a message, observes it and
// writes it to the other side before it reads the next. Towards the
// upstream that write blocks: an upstream slow to read holds up only the
// client sending to it, through TCP, as it would without the relay, and
// what waits in the proxy is one message. Towards the client it never
// blocks (relayClientConn): what the socket does not take waits for the
// writer, within the front's bounds (-out-queue, -out-queue-bytes,
// -out-queue-bytes-total), so that a client slow to read never holds up
// the upstream's connection, where a router would queue for it without a
// bound in bytes (stock nexus: 2 GB for three clients not reading 1 MB
// messages). Past the bounds, or when a write does not complete within the
// write timeout, the client is a slow consumer, dropped as in the embedded
// router; an INVOCATION for a callee whose queue is half full is refused
// instead, with an ERROR to the upstream. A side that sends nothing, not
// even a pong, for twice the keep-alive interval ends the relay; the
// pinger pings both sides when they are quiet.
//
// The first side to fail or close decides how the relay ends (see end):
// its close code passes to the other side, or, when the upstream is lost,
// the client gets closeUpstreamLost (1011). Both connections are closed within
// flushTimeout whatever the peers do.
type relay struct {
	client, upstream relaySide
	clientNet        *relayClientConn // under client.ws
	upstreamNet      *relayConn       // under upstream.ws (and its TLS, for a wss:// upstream)
	serializer       serialize.Serializer
	payloadType      int           // of the front's own messages to either side
	obs              *connObserver // nil when not observing
	guard            *guard
	cfg              *peerConfig
	done             func(*relay) // the router forgets the relay

	// inSession is true from WELCOME until a GOODBYE or ABORT either way.
	inSession atomic.Bool

	ending     atomic.Bool   // end is deciding how the relay ends
	stopping   chan struct{} // closed by end: the pinger stops, the writer writes what end wrote and stops
	pingDone   chan struct{} // closed when the pinger has stopped
	writerDone chan struct{} // closed when the client's writer has stopped
	flushBy    time.Time     // set by end: no write to either side after it
	hardStop   *time.Timer   // closes both connections flushTimeout after end
	decided    chan struct{} // closed when end has told both sides (hardStop is set)
	exited     atomic.Int32  // directions done
}

// relaySide is one side of a relay: the client or the upstream.
type relaySide struct {
	ws   *websocket.Conn
	sock net.Conn // the socket under ws: closing it cuts any write short

	// Data messages are written by one goroutine at a time (gorilla
	// allows one writer); control frames need no lock.
	wmu   sync.Mutex
	moved time.Time // when the write deadline last moved; under wmu

	heard        atomic.Int64 // UnixNano of the last frame or pong read
	readDeadline time.Time    // when the read deadline last moved; by this side's reader only
}

// write writes one message. Like the embedded peer's, the deadline moves
// only when it would move by more than 1/deadlineSlack of the timeout.
func (s *relaySide) write(typ int, b []byte, timeout time.Duration) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if now := time.Now(); now.Sub(s.moved) >= timeout/deadlineSlack {
		s.moved = now
		_ = s.ws.SetWriteDeadline(now.Add(timeout))
	}
	return s.ws.WriteMessage(typ, b)
}

// The sides of a relay.
type side int

const (
	clientSide side = iota
	upstreamSide
)

// relayEnd is why a relay ends, as end counts it and tells both peers.
type relayEnd struct {
	by       side   // the side that failed or closed first
	code     int    // the close code the other side gets
	text     string // the close reason with it
	closeBy  bool   // by gets a close frame too (code byCode, text byText)
	drop     bool   // the client can take nothing more: its socket is closed at once
	byCode   int
	byText   string
	shutdown bool // the router is shutting down: GOODBYE to both first

	// reason is the rejection to count, "" for none; why and err say more
	// in its log line.
	reason, why string
	err         error
}

// shutdownEnd is how every relay ends when the router closes.
var shutdownEnd = relayEnd{shutdown: true, code: websocket.CloseGoingAway, text: "router shutting down",
	closeBy: true, byCode: websocket.CloseGoingAway, byText: "router shutting down"}

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
	if err == nil && !slices.Contains(offered, up.Subprotocol()) {
		// gorilla takes whatever the server answers; one the client did
		// not offer, or none, is one the relay cannot read.
		err = fmt.Errorf("the upstream chose subprotocol %q, not one of %q", up.Subprotocol(), offered)
		up.Close()
	}
	if err != nil {
		reason, status := RejectUpstreamUnavailable, http.StatusBadGateway
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
			if resp.StatusCode >= 400 && resp.StatusCode < 500 {
				// Most likely the client's own doing (its Authorization
				// or Cookie): it gets the upstream's answer, and an
				// upstream refusing clients is not one that is down.
				reason, status = RejectUpstreamRefused, resp.StatusCode
			}
		}
		r.rejected(reason)
		r.refusals.Log(slog.LevelWarn, "refused WebSocket connection: "+reason, "refused WebSocket connection",
			slog.String("rejection", reason), slog.String("remote", req.RemoteAddr),
			slog.String("upstream", r.upstreamURL), slog.Any("err", err))
		// The details are the operator's (in the log), not the client's.
		text := "Bad Gateway: the upstream WAMP router cannot be reached"
		if reason == RejectUpstreamRefused {
			text = http.StatusText(status) + ": refused by the upstream WAMP router"
		}
		http.Error(w, text, status)
		return
	}
	upgrader := r.upgrader
	upgrader.Subprotocols = []string{up.Subprotocol()}
	rw := &relayingWriter{ResponseWriter: w, pool: r.peer.batches, slack: slack, total: &r.peer.queuedTotal}
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
func (r *Router) startRelay(conn *websocket.Conn, connNet *relayClientConn, up *websocket.Conn, upNet *relayConn) {
	// What is held for one side goes out before the other is read.
	connNet.out, upNet.out = upNet, connNet
	serializer, payloadType, _ := serializerOf(up.Subprotocol())
	conn.SetReadLimit(r.maxMessage)
	up.SetReadLimit(r.maxMessage)
	rl := &relay{
		client:      relaySide{ws: conn, sock: connNet.Conn},
		upstream:    relaySide{ws: up, sock: upNet.Conn},
		clientNet:   connNet,
		upstreamNet: upNet,
		serializer:  serializer,
		payloadType: payloadType,
		guard:       newGuard(r.peer.maxInFlight, r.peer.maxTestaments, r.peer.maxTestamentBytes).sharing(&r.peer.totals),
		cfg:         &r.peer,
		stopping:    make(chan struct{}),
		pingDone:    make(chan struct{}),
		writerDone:  make(chan struct{}),
		decided:     make(chan struct{}),
	}
	if !r.track(rl) {
		// The router closed while this one dialed: nobody is in a
		// session yet.
		for _, s := range []*relaySide{&rl.client, &rl.upstream} {
			_ = s.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseGoingAway, "router shutting down"), time.Now().Add(time.Second))
		}
		for _, s := range []*relaySide{&rl.client, &rl.upstream} {
			s.sock.Close()
		}
		return
	}
	// From now on what the client's socket does not take at once waits
	// for the writer (the close frame above was written, blocking).
	connNet.start()
	if r.open != nil {
		rl.obs = newConnObserver(r.open, r.traffic)
	}
	rl.start()
}

// track adds rl to the relays Close ends; false once the router is closing.
func (r *Router) track(rl *relay) bool {
	r.relaysMu.Lock()
	defer r.relaysMu.Unlock()
	if r.closing.Load() {
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
		go rl.end(shutdownEnd)
	}
	r.relaysWG.Wait()
}

func (rl *relay) start() {
	now := time.Now()
	for _, s := range []*relaySide{&rl.client, &rl.upstream} {
		s.heard.Store(now.UnixNano())
		if k := rl.cfg.keepAlive; k > 0 {
			s.readDeadline = now
			_ = s.ws.SetReadDeadline(now.Add(2 * k))
			s.ws.SetPongHandler(func(string) error { rl.heard(s); return nil })
		}
		// Pongs within the write timeout, as every other write (gorilla's
		// own handler gives them a second). The client gets one only
		// while nothing waits to be written to it, as from the embedded
		// router: a client flooding pings and reading nothing piles up no
		// pongs (RFC 6455 allows answering only the latest).
		s.ws.SetPingHandler(func(data string) error {
			if s == &rl.client {
				if n, _ := rl.clientNet.pending(); n > 0 {
					return nil
				}
			}
			err := s.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(rl.cfg.writeTimeout))
			if errors.Is(err, websocket.ErrCloseSent) {
				return nil
			}
			return err
		})
		// gorilla answers a peer's close frame with the same code before
		// the reader sees it; end passes it on to the other side.
	}
	go rl.fromClient()
	go rl.fromUpstream()
	go rl.writeToClient()
	if rl.cfg.keepAlive > 0 {
		go rl.ping()
	} else {
		close(rl.pingDone)
	}
}

// heard notes a frame from s's peer and moves its read deadline to twice
// the keep-alive from now, unless it moved less than 1/deadlineSlack of
// the interval ago, as the embedded peer does. Called by s's reader only.
func (rl *relay) heard(s *relaySide) {
	now := time.Now()
	s.heard.Store(now.UnixNano())
	if k := rl.cfg.keepAlive; k > 0 && now.Sub(s.readDeadline) >= k/deadlineSlack && !rl.ending.Load() {
		s.readDeadline = now
		_ = s.ws.SetReadDeadline(now.Add(2 * k))
	}
}

// ping pings a side that has been quiet for half the keep-alive interval,
// until the relay ends.
func (rl *relay) ping() {
	defer close(rl.pingDone)
	t := time.NewTicker(rl.cfg.keepAlive / 2)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			for _, s := range []*relaySide{&rl.client, &rl.upstream} {
				if time.Since(time.Unix(0, s.heard.Load())) >= rl.cfg.keepAlive/2 {
					_ = s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(rl.cfg.writeTimeout))
				}
			}
		case <-rl.stopping:
			return
		}
	}
}

// writeToClient writes what the client's socket did not take at once, each
// write within the write timeout, until the relay ends; then what end
// wrote (GOODBYE, the close frame), by the flush deadline. A write that
// fails ends the relay: the client is a slow consumer when it timed out.
func (rl *relay) writeToClient() {
	defer close(rl.writerDone)
	deadline := func() time.Time { return time.Now().Add(rl.cfg.writeTimeout) }
	for {
		select {
		case <-rl.clientNet.wake:
			if err := rl.clientNet.drain(deadline); err != nil {
				rl.end(rl.clientWriteFailed(err))
			}
		case <-rl.stopping:
			<-rl.decided
			rl.clientNet.finish()
			_ = rl.clientNet.drain(func() time.Time { return rl.flushBy })
			return
		}
	}
}

// fromClient relays what the client sends, until either side ends.
func (rl *relay) fromClient() {
	defer rl.exit()
	for {
		typ, buf, err := readMessage(rl.client.ws, &rl.cfg.reads)
		if isFlushError(err) {
			rl.end(rl.upstreamWriteFailed(err))
			return
		}
		if err != nil {
			rl.end(rl.clientFailed(err))
			return
		}
		rl.heard(&rl.client)
		if rl.ending.Load() {
			// The upstream has its close frame (or is gone): what the
			// client sends until its own close is neither passed on
			// nor observed, and takes nothing from the guard's bounds.
			rl.cfg.reads.put(buf)
			continue
		}
		pass, abort, replyErr := rl.judge(*buf)
		if pass {
			err = rl.upstream.write(typ, *buf, rl.cfg.writeTimeout)
		}
		rl.cfg.reads.put(buf)
		switch {
		case replyErr != nil:
			rl.end(rl.clientWriteFailed(replyErr))
			return
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
// the client itself for what the guard refuses (replyErr: that answer
// could not be written). pass tells whether the message goes on to the
// upstream, abort whether the front aborted the session. A message the
// relay cannot decode is counted and dropped, as in the embedded router:
// passed on, it would pass the guard unseen, to an upstream that may read
// it.
func (rl *relay) judge(b []byte) (pass, abort bool, replyErr error) {
	msg, err := rl.serializer.Deserialize(b)
	if err != nil {
		rl.cfg.rejected(RejectUndecodable)
		return false, false, nil
	}
	if rl.obs != nil {
		rl.obs.received(msg, len(b))
	}
	if v := rl.guard.inbound(msg, len(b)); !v.passed() {
		rl.cfg.rejected(v.reason)
		rl.cfg.log.Log(slog.LevelWarn, "refused a message: "+v.reason, "refused a message", slog.String("type", msg.MessageType().String()),
			slog.String("reason", v.reason), slog.String("remote", rl.client.ws.RemoteAddr().String()))
		if v.reply == nil {
			return false, false, nil
		}
		_, call := msg.(*wamp.Call)
		if _, answered := v.reply.(*wamp.Error); call && answered && rl.obs != nil {
			rl.obs.fromClient(msg) // an error answer, counted like any other
		}
		if err := rl.toClient(v.reply); err != nil {
			return false, false, err
		}
		_, abort := v.reply.(*wamp.Abort)
		return false, abort, nil
	}
	switch msg.(type) {
	case *wamp.Goodbye, *wamp.Abort:
		rl.inSession.Store(false)
	}
	if rl.obs != nil {
		rl.obs.fromClient(msg)
	}
	return true, false, nil
}

// toClient encodes, observes and writes a message of the front's own to
// the client.
func (rl *relay) toClient(msg wamp.Message) error {
	b, err := rl.serializer.Serialize(msg)
	if err != nil {
		return fmt.Errorf("encode %v for a client: %w", msg.MessageType(), err)
	}
	_, err = rl.toClientFrame(rl.payloadType, b, msg)
	return err
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

// fromUpstream relays what the upstream sends, until either side ends. A
// message the relay cannot decode goes on unobserved (the client judges
// it, as it would without the relay), and is logged.
func (rl *relay) fromUpstream() {
	defer rl.exit()
	for {
		// (What this read releases for the client never fails here: a
		// write to the client that fails ends the relay in the writer.)
		typ, buf, err := readMessage(rl.upstream.ws, &rl.cfg.reads)
		if err != nil {
			rl.end(rl.upstreamFailed(err))
			return
		}
		rl.heard(&rl.upstream)
		msg, err := rl.serializer.Deserialize(*buf)
		if err != nil {
			rl.cfg.log.Log(slog.LevelWarn, "undecodable message from the upstream", "undecodable message from the upstream",
				slog.Int("bytes", len(*buf)), slog.Any("err", err))
			msg = nil
		}
		refused, err := rl.toClientFrame(typ, *buf, msg)
		if refused {
			err = rl.refuseInvocation(msg.(*wamp.Invocation))
		}
		// A payload longer than copyLimit is referenced, not copied,
		// until the client's socket has taken it: the buffer goes back to
		// the pool only once nothing is pending or being written.
		if len(*buf) <= copyLimit || rl.clientNet.settled() {
			rl.cfg.reads.put(buf)
		}
		if err != nil {
			if refused {
				rl.end(rl.upstreamWriteFailed(err))
			} else {
				rl.end(rl.clientWriteFailed(err))
			}
			return
		}
	}
}

// errRelayEnding is a message for the client that comes after the relay
// has decided to end.
var errRelayEnding = errors.New("the relay is ending")

// slowConsumerError is a message for the client refused because what
// waits to be written to it is over the front's bounds.
type slowConsumerError struct{ why string }

func (e *slowConsumerError) Error() string { return "slow consumer: " + e.why }

// toClientFrame writes one message to the client, msg decoded from b (nil
// when it could not be), without blocking: what the socket does not take
// waits for the writer. What waits must stay within the front's bounds, as
// for the embedded router's clients (peerConfig.queueRoom): past them the client
// is a slow consumer, and the message is neither observed nor written. An
// INVOCATION for a callee with half its bounds waiting is not written
// either but refused (refuseInvoke): the upstream is answered for the
// callee, as the embedded router answers nexus.
func (rl *relay) toClientFrame(typ int, b []byte, msg wamp.Message) (refuseInvoke bool, err error) {
	rl.client.wmu.Lock()
	defer rl.client.wmu.Unlock()
	if rl.ending.Load() {
		// What end writes (GOODBYE, the close frame) is the last: a
		// message after it would be observed and never delivered.
		return false, errRelayEnding
	}
	size, frames := rl.clientNet.pending()
	_, isInvocation := msg.(*wamp.Invocation)
	refuse, slow := rl.cfg.queueRoom(size, frames, int64(len(b)), isInvocation)
	if slow != "" {
		return false, &slowConsumerError{slow}
	}
	if refuse {
		return true, nil
	}
	if msg != nil {
		// Observed before it is written: the client's answer to a
		// WELCOME (its first CALL) must find the session open.
		rl.outbound(msg, len(b))
	}
	if err := rl.client.ws.WriteMessage(typ, b); err != nil {
		return false, err
	}
	rl.clientNet.framed()
	return false, nil
}

// refuseInvocation answers the upstream for a callee too far behind to be
// given inv, with the ERROR the embedded router gives (wsPeer.
// refuseInvocation): the call fails at once, and the callee stays.
func (rl *relay) refuseInvocation(inv *wamp.Invocation) error {
	rl.cfg.rejected(RejectCalleeBlocked)
	b, err := rl.serializer.Serialize(&wamp.Error{Type: wamp.INVOCATION, Request: inv.Request, Details: wamp.Dict{},
		Error: wamp.ErrNetworkFailure, Arguments: wamp.List{"callee blocked - cannot call procedure"}})
	if err != nil {
		return fmt.Errorf("encode an ERROR for the upstream: %w", err)
	}
	return rl.upstream.write(rl.payloadType, b, rl.cfg.writeTimeout)
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
		e.reason, e.why = RejectTooLarge, "a message over the size limit"
		e.closeBy, e.byCode, e.byText = true, websocket.CloseMessageTooBig, "message too large"
	case errors.As(err, &ne) && ne.Timeout():
		e.reason, e.why = RejectKeepAlive, "no message and no pong within twice the keep-alive interval"
		e.closeBy, e.byCode, e.byText = true, websocket.CloseGoingAway, "keep-alive timeout"
	}
	return e
}

// clientWriteFailed is how the relay ends when a write to the client
// failed, or would have gone past the front's bounds: a client that does
// not take its messages in time is a slow consumer, dropped at once.
func (rl *relay) clientWriteFailed(err error) relayEnd {
	e := relayEnd{by: clientSide, code: websocket.CloseGoingAway, text: "client connection lost", drop: true}
	var ne net.Error
	var slow *slowConsumerError
	switch {
	case errors.As(err, &slow):
		e.reason, e.why = RejectSlowConsumer, slow.why
	case errors.As(err, &ne) && ne.Timeout():
		e.reason, e.why = RejectSlowConsumer, "a write did not complete within the write timeout"
	}
	return e
}

// upstreamFailed is how the relay ends when reading from the upstream
// failed. The upstream's own close passes to the client unchanged; it is
// counted as an upstream lost when it leaves the client's session open.
func (rl *relay) upstreamFailed(err error) relayEnd {
	e := relayEnd{by: upstreamSide, code: closeUpstreamLost, text: "upstream router connection lost", err: err}
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		e.code, e.text = sendableCloseCode(ce.Code), ce.Text
	case errors.Is(err, websocket.ErrReadLimit):
		e.reason, e.why = RejectTooLarge, "a message from the upstream over the size limit"
		e.code, e.text = websocket.CloseMessageTooBig, "upstream message too large"
		e.closeBy, e.byCode, e.byText = true, websocket.CloseMessageTooBig, "message too large"
		return e
	case errors.As(err, &ne) && ne.Timeout():
		e.text = "upstream router not responding"
	}
	if rl.inSession.Load() {
		e.reason, e.why = RejectUpstreamLost, e.text
	}
	return e
}

// upstreamWriteFailed is how the relay ends when a write to the upstream
// failed.
func (rl *relay) upstreamWriteFailed(err error) relayEnd {
	return relayEnd{by: upstreamSide, code: closeUpstreamLost, text: "upstream router connection lost",
		reason: RejectUpstreamLost, why: "a write to the upstream failed", err: err}
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

// end decides, once, how the relay ends: it counts e's reason; on
// shutdown each side of a session gets GOODBYE; then the side that did not
// end it gets a close frame with e's code (and the side that did when e
// says so), and both connections are closed once both directions are
// done, or flushTimeout from now whatever the peers do. Safe from any
// goroutine; the first call decides, so that a failure seen from both
// directions at once counts once.
func (rl *relay) end(e relayEnd) {
	if !rl.ending.CompareAndSwap(false, true) {
		return
	}
	defer close(rl.decided)
	close(rl.stopping)
	// What the session holds against the bounds over all sessions goes
	// back now, not once the peers have answered the close (exit gives
	// back what a message read meanwhile took).
	rl.guard.reset()
	flushBy := time.Now().Add(flushTimeout)
	rl.flushBy = flushBy // for the writer, which reads it once decided is closed
	rl.hardStop = time.AfterFunc(flushTimeout, rl.closeBoth)
	if e.reason != "" && !rl.cfg.shutdown.Load() { // on the way out, not worth a count
		rl.cfg.rejected(e.reason)
		attrs := []any{slog.String("reason", e.reason), slog.String("why", e.why),
			slog.String("remote", rl.client.ws.RemoteAddr().String())}
		if e.err != nil {
			attrs = append(attrs, slog.Any("err", e.err))
		}
		// Each reason is a kind of its own for the rate limit.
		rl.cfg.slowLog.Log(slog.LevelWarn, "closing a relayed client: "+e.reason, "closing a relayed client", attrs...)
	}
	if e.drop {
		// Nothing more reaches this client: what waits for it goes, and
		// its reader ends at once.
		rl.clientNet.discard()
		rl.client.sock.Close()
	}
	// What is held goes out now, and what follows at once.
	rl.clientNet.finish()
	_ = rl.upstreamNet.finish(flushBy)
	if e.shutdown && rl.inSession.Load() {
		if b, err := rl.serializer.Serialize(&wamp.Goodbye{Reason: wamp.CloseSystemShutdown, Details: wamp.Dict{}}); err == nil {
			for _, s := range []*relaySide{&rl.client, &rl.upstream} {
				// A writer busy with a peer that does not read holds the
				// lock until the hard stop cuts its write short.
				s.wmu.Lock()
				if s == &rl.client {
					rl.outbound(&wamp.Goodbye{Reason: wamp.CloseSystemShutdown, Details: wamp.Dict{}}, len(b))
				}
				_ = s.ws.SetWriteDeadline(flushBy)
				_ = s.ws.WriteMessage(rl.payloadType, b)
				s.wmu.Unlock()
			}
		}
	}
	other, by := &rl.upstream, &rl.client
	if e.by == upstreamSide {
		other, by = &rl.client, &rl.upstream
	}
	_ = other.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(e.code, e.text), flushBy)
	if e.closeBy {
		_ = by.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(e.byCode, e.byText), flushBy)
	}
	// Each side's reader ends with the close frame it gets back, or at
	// the deadline.
	_ = rl.client.ws.SetReadDeadline(flushBy)
	_ = rl.upstream.ws.SetReadDeadline(flushBy)
}

// exit is each direction's last step: the second one closes both
// connections and ends the observation.
func (rl *relay) exit() {
	if rl.exited.Add(1) < 2 {
		return
	}
	<-rl.decided    // each direction called end before it got here
	<-rl.writerDone // it has written what end wrote, by the flush deadline
	rl.hardStop.Stop()
	rl.closeBoth()
	<-rl.pingDone // stopped by end; a ping in progress fails on the closed socket
	if rl.obs != nil {
		rl.obs.endSession(CloseConnectionLost)
		rl.obs.closeTraffic()
	}
	rl.guard.reset()
	rl.done(rl)
}

// closeBoth closes both sockets, then the WebSockets: a write stuck on a
// peer that does not read (a TLS close-notify among them) fails at once.
// What still waits for the client is given back to the bound over all
// clients.
func (rl *relay) closeBoth() {
	rl.client.sock.Close()
	rl.upstream.sock.Close()
	rl.clientNet.discard()
	rl.client.ws.Close()
	rl.upstream.ws.Close()
}

// checkUpstreamURL checks an upstream router's URL: ws:// or wss://, with
// a host.
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
