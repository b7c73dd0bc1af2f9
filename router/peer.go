package router

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// peerConfig is what every wsPeer of a Router shares.
type peerConfig struct {
	outQueue, outQueueBytes int
	maxQueuedTotal          int64
	queuedTotal             atomic.Int64  // bytes in every peer's frames
	writeTimeout, keepAlive time.Duration // keepAlive 0: no pings

	maxInFlight, maxTestaments, maxTestamentBytes int
	totals                                        guardTotals // over all sessions

	batches *sync.Pool // chunks of the bytes waiting to be written (batchConn)
	reads   readPool

	rejected func(string)
	shutdown *atomic.Bool    // the router is closing
	log      *ratelog.Logger // trouble with messages
	slowLog  *ratelog.Logger // slow consumers and vanished clients
}

// wsPeer is one client's WebSocket connection as nexus sees it: a
// wamp.Peer. It is ours rather than nexus's transport.NewWebsocketPeer for
// reasons found under load and attack:
//
//   - nexus's peer closes its send channel on Close, while on shutdown the
//     dealer may still try to send to it (realm shutdown skips removing
//     sessions from the dealer): a data race, and a "send on closed
//     channel" panic. This peer never closes its send channel; what is sent
//     after Close stays in the buffer or, when full, is dropped by the
//     router's non-blocking sends.
//   - nexus's peer discards what is queued when it closes, GOODBYE on
//     shutdown among it. This peer writes what is queued first, within a
//     deadline, and makes sure a session being shut down gets GOODBYE.
//   - the front must see every message before nexus does, to refuse what
//     nexus cannot digest (see guard).
//   - sending to one client must never hold up anyone else (see below).
//
// Three goroutines serve a connection:
//
//   - receive reads, decodes, guards and observes what the client sends,
//     and hands it to nexus on rd;
//   - encode takes what nexus sends on wr, observes, encodes and frames
//     it at once, and writes it as far as the socket takes it without
//     waiting, together with whatever else is waiting on wr (see
//     batchConn). It never blocks, so wr (nexus's non-blocking sends)
//     stays nearly empty and nexus never answers "callee blocked" for a
//     client that is merely busy; and a message that the socket takes
//     costs no other goroutine's wake-up, as with stock nexus's peer;
//   - send writes, blocking, what the socket did not take at once, each
//     write within the write timeout, and pings.
//
// The frames waiting to be written are bounded in frames and in bytes: a
// message's size is known only once encoded, and nexus writes wr itself, so
// bytes can only be counted after encoding. Encoding at once also means a
// queued message holds its wire bytes only, not the decoded arguments.
// A client whose queue is full either way, or that does not take a frame
// within the write timeout, is a slow consumer: it is disconnected, and
// nexus ends its calls as for any client that leaves. This is what keeps a
// client that stops reading from stalling a callee everybody shares (nexus
// retries a YIELD for a blocked caller, holding up the callee's session).
type wsPeer struct {
	conn        *websocket.Conn
	batch       *batchConn // under conn
	serializer  serialize.Serializer
	payloadType int
	obs         *connObserver // nil when not observing
	guard       *guard
	cfg         *peerConfig

	rd chan wamp.Message // to the router; closed when the client is gone
	wr chan wamp.Message // from the router; never closed, see above

	lastHeard atomic.Int64 // UnixNano of the last frame or pong read

	readDeadlineMoved time.Time   // by heard, on receive's goroutine only
	dead              atomic.Bool // the connection failed or was dropped

	// inSession is true from WELCOME until a GOODBYE or ABORT is written
	// or a GOODBYE read.
	inSession atomic.Bool

	// refusals are the front's answers for the client to nexus (see
	// refuseInvocation), which pump hands over on rd; rdMu and rdClosed
	// keep it from racing receive's close of rd.
	refusals chan wamp.Message
	rdMu     sync.Mutex
	rdClosed bool
	pumpDone chan struct{}

	closing   chan struct{} // closed by Close
	flushBy   time.Time     // set before closing is closed
	closeOnce sync.Once
	recvDone  chan struct{}
	encDone   chan struct{}
	sendDone  chan struct{}
}

// flushTimeout bounds how long Close spends writing what is still queued.
const flushTimeout = 2 * time.Second

// deadlineSlack: a read or write deadline is moved later only when it
// would move by more than 1/deadlineSlack of its interval (see heard and
// batchConn.setDeadline); an earlier one is always set.
const deadlineSlack = 8

func newWSPeer(conn *websocket.Conn, batch *batchConn, serializer serialize.Serializer, payloadType int, obs *connObserver, cfg *peerConfig) *wsPeer {
	p := &wsPeer{
		conn:        conn,
		batch:       batch,
		serializer:  serializer,
		payloadType: payloadType,
		obs:         obs,
		guard:       newGuard(cfg.maxInFlight, cfg.maxTestaments, cfg.maxTestamentBytes).sharing(&cfg.totals),
		cfg:         cfg,
		rd:          make(chan wamp.Message),
		wr:          make(chan wamp.Message, cfg.outQueue),
		closing:     make(chan struct{}),
		recvDone:    make(chan struct{}),
		encDone:     make(chan struct{}),
		sendDone:    make(chan struct{}),
		refusals:    make(chan wamp.Message, cfg.outQueue),
		pumpDone:    make(chan struct{}),
	}
	p.heard()
	batch.start()
	go p.receive()
	go p.encode()
	go p.pump()
	go p.send()
	return p
}

func (p *wsPeer) Recv() <-chan wamp.Message { return p.rd }
func (p *wsPeer) Send() chan<- wamp.Message { return p.wr }
func (p *wsPeer) IsLocal() bool             { return false }

// Close writes what is queued (GOODBYE included), sends the close frame,
// closes the connection and waits for the goroutines. It returns within
// about flushTimeout whatever the client does. Safe to call more than once.
func (p *wsPeer) Close() {
	p.closeOnce.Do(func() {
		p.flushBy = time.Now().Add(flushTimeout)
		close(p.closing)
		// A write in progress has a deadline of its own, up to the write
		// timeout; closing the connection cuts it short.
		stuck := time.AfterFunc(flushTimeout+250*time.Millisecond, func() { p.conn.Close() })
		<-p.encDone
		<-p.sendDone
		stuck.Stop()
		p.conn.Close()
		<-p.recvDone
		<-p.pumpDone
		p.batch.discard() // what the flush deadline left
		if p.obs != nil {
			p.obs.endSession(CloseConnectionLost)
			p.obs.closeTraffic() // every goroutine that counts is done
		}
		p.guard.reset() // what the session held over all sessions goes back
	})
}

// drop disconnects a client that is not keeping up (reason, counted once)
// or whose connection failed (reason ""). Safe from any goroutine.
func (p *wsPeer) drop(reason, why string) {
	if !p.dead.CompareAndSwap(false, true) {
		return
	}
	if reason != "" && !p.isClosing() { // on the way out, not worth a count
		p.cfg.rejected(reason)
		// Each reason is a kind of its own for the rate limit.
		p.cfg.slowLog.Log(slog.LevelWarn, "disconnecting a client: "+reason, "disconnecting a client",
			slog.String("reason", reason), slog.String("why", why),
			slog.String("remote", p.conn.RemoteAddr().String()))
	}
	p.conn.Close() // ends receive, so the router drops the session
}

// heard notes that the client sent something and moves the read deadline
// to twice the keep-alive interval from now, unless it moved less than
// deadlineSlack of it ago: moving a deadline is a change to the runtime's
// timers, and per message it was 2–3% of the router under load. A client
// thus gets between 15/8 and 2 intervals.
func (p *wsPeer) heard() {
	now := time.Now()
	p.lastHeard.Store(now.UnixNano())
	if p.cfg.keepAlive > 0 && now.Sub(p.readDeadlineMoved) >= p.cfg.keepAlive/deadlineSlack {
		p.readDeadlineMoved = now
		_ = p.conn.SetReadDeadline(now.Add(2 * p.cfg.keepAlive))
	}
}

// receive reads, decodes, guards and observes messages from the client and
// hands them to the router, until the connection fails, the guard ends it,
// or the peer closes.
func (p *wsPeer) receive() {
	defer close(p.recvDone)
	defer p.closeRecv() // tells the router the client is gone
	if p.cfg.keepAlive > 0 {
		p.conn.SetPongHandler(func(string) error { p.heard(); return nil })
	}
	// A ping is answered only while nothing waits to be written to the
	// client (RFC 6455 allows answering the latest ping only): pongs are
	// written without blocking, and one that pings without reading must
	// not pile them up.
	p.conn.SetPingHandler(func(data string) error {
		if n, _ := p.batch.pending(); n > 0 {
			return nil
		}
		err := p.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	for {
		buf, err := p.read()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				p.drop(RejectTooLarge, "a message over the size limit")
			case errors.As(err, &ne) && ne.Timeout() && !p.dead.Load():
				p.drop(RejectKeepAlive, "no message and no pong within twice the keep-alive interval")
			}
			p.drop("", "")
			// The client has left now, not when nexus is done removing
			// its session (milliseconds later): a call whose deadline
			// passes in between was not waited for in vain.
			if p.obs != nil {
				p.obs.endSession(CloseConnectionLost)
			}
			return
		}
		p.heard()
		msg, end := p.decode(*buf)
		p.cfg.reads.put(buf)
		if end {
			// The ABORT is queued; the router's Close writes it.
			return
		}
		if msg == nil {
			continue // counted; nexus's peer drops undecodable ones too
		}
		select {
		case p.rd <- msg:
		case <-p.closing:
			return
		}
	}
}

// read reads the next message into a buffer from the router's pool (see
// readMessage).
func (p *wsPeer) read() (*[]byte, error) {
	_, buf, err := readMessage(p.conn, &p.cfg.reads)
	return buf, err
}

// readMessage reads conn's next message into a buffer from pool, and says
// whether it is text or binary. The serializers copy what they decode
// (wampjson makes new strings; ugorji's ZeroCopy is off in nexus's handles,
// for what wampjson leaves to them and for msgpack and CBOR;
// TestDecodedMessagesDoNotShareTheReadBuffer), so the buffer goes back as
// soon as the message is decoded (or relayed): unlike gorilla's
// ReadMessage, which grows a new buffer from 512 bytes for every message, a
// 10 KiB message costs no allocation and no copy once the pool is warm.
func readMessage(conn *websocket.Conn, pool *readPool) (int, *[]byte, error) {
	typ, r, err := conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	buf := pool.get()
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return typ, buf, nil
		}
		if err != nil {
			*buf = b
			pool.put(buf)
			return 0, nil, err
		}
	}
}

// decode turns one frame into a message, lets the guard judge it and shows
// it to the observer. It returns nil for a message not to pass on, and end
// when the session is to be aborted.
func (p *wsPeer) decode(b []byte) (msg wamp.Message, end bool) {
	msg, err := p.serializer.Deserialize(b)
	if err != nil {
		p.cfg.rejected(RejectUndecodable)
		return nil, false
	}
	if p.obs != nil {
		p.obs.received(msg, len(b)) // whether or not the guard lets it through
	}
	if v := p.guard.inbound(msg, len(b)); !v.passed() {
		p.cfg.rejected(v.reason)
		// Each reason is a kind of its own for the rate limit.
		p.cfg.log.Log(slog.LevelWarn, "refused a message: "+v.reason, "refused a message", slog.String("type", msg.MessageType().String()),
			slog.String("reason", v.reason), slog.String("remote", p.conn.RemoteAddr().String()))
		if v.reply == nil {
			return nil, false
		}
		_, call := msg.(*wamp.Call)
		if _, answered := v.reply.(*wamp.Error); call && answered && p.obs != nil {
			// The caller gets an ERROR for its CALL, as from nexus:
			// that is an error answer, counted like any other.
			p.obs.fromClient(msg)
		}
		p.reply(v.reply)
		_, abort := v.reply.(*wamp.Abort)
		return nil, abort
	}
	if _, bye := msg.(*wamp.Goodbye); bye {
		p.inSession.Store(false)
	}
	if p.obs != nil {
		p.obs.fromClient(msg)
	}
	return msg, false
}

// reply queues the front's own answer to the client, as nexus would.
func (p *wsPeer) reply(msg wamp.Message) {
	select {
	case p.wr <- msg:
	default:
		p.drop(RejectSlowConsumer, "outbound queue full")
	}
}

// encode encodes, observes and writes what the router sends, until Close;
// then it frames what is left, and GOODBYE if the router is shutting down
// and the session did not get one, for send to write.
func (p *wsPeer) encode() {
	defer close(p.encDone)
	for {
		select {
		case msg := <-p.wr:
			p.writeWaiting(msg)
		case <-p.closing:
			p.batch.hold()
			for drained := false; !drained; {
				select {
				case msg := <-p.wr:
					p.enqueue(msg)
				default:
					drained = true
				}
			}
			if p.cfg.shutdown.Load() && p.inSession.Load() {
				// This one is for the session whose GOODBYE the router
				// dropped because its queue was full.
				p.enqueue(&wamp.Goodbye{Reason: wamp.CloseSystemShutdown, Details: wamp.Dict{}})
			}
			p.batch.release()
			return
		}
	}
}

// writeWaiting frames first and, when more messages are already waiting
// on wr, up to maxBatchFrames of them with it, and writes them in one
// system call, as far as the socket takes them.
func (p *wsPeer) writeWaiting(first wamp.Message) {
	p.batch.hold()
	p.enqueue(first)
	for n := 1; n < maxBatchFrames && p.batch.heldBytes() < maxBatchBytes; n++ {
		select {
		case msg := <-p.wr:
			p.enqueue(msg)
		default:
			n = maxBatchFrames
		}
	}
	p.batch.release()
}

func (p *wsPeer) closeRecv() {
	p.rdMu.Lock()
	p.rdClosed = true
	close(p.rd)
	p.rdMu.Unlock()
}

// refuseInvocation answers an INVOCATION for a callee whose queue is half
// full in bytes, or full in frames, as nexus does for one whose channel is full: ERROR
// wamp.error.network_failure ("callee blocked"), which nexus passes on to
// the caller. A callee that reads, but slower than its callers send, is
// thus not a slow consumer: its callers get pushed back instead. It never
// blocks: the answer is queued for pump, because nexus's goroutine for this
// session may itself be busy for a while (it retries a RESULT to a blocked
// caller), and the encoder must keep draining. A callee with -out-queue
// answers still waiting is far behind: a slow consumer.
func (p *wsPeer) refuseInvocation(inv *wamp.Invocation) {
	p.cfg.rejected(RejectCalleeBlocked)
	answer := &wamp.Error{Type: wamp.INVOCATION, Request: inv.Request, Details: wamp.Dict{},
		Error: wamp.ErrNetworkFailure, Arguments: wamp.List{"callee blocked - cannot call procedure"}}
	select {
	case p.refusals <- answer:
	default:
		p.drop(RejectSlowConsumer, "too many refused invocations waiting for the router")
	}
}

// pump hands the front's answers for the client to nexus, until Close.
func (p *wsPeer) pump() {
	defer close(p.pumpDone)
	for {
		select {
		case m := <-p.refusals:
			p.rdMu.Lock()
			if !p.rdClosed {
				select {
				case p.rd <- m:
				case <-p.closing:
				}
			}
			p.rdMu.Unlock()
		case <-p.closing:
			return
		}
	}
}

// enqueue encodes one message and frames it among the pending bytes, or
// drops the client as a slow consumer if what is pending is over the
// bounds in frames or bytes. One frame larger than the byte bound still
// goes when nothing is pending.
func (p *wsPeer) enqueue(msg wamp.Message) {
	if p.dead.Load() {
		return // nobody to write to; nexus is dropping the session
	}
	b, ok := p.marshal(msg)
	if !ok {
		return
	}
	n := int64(len(b))
	// encode is the only one to frame data (the reader adds at most one
	// pong, see receive), so the bounds checked here hold below: a frame
	// dropped with a slow consumer was never observed (an answer the
	// client will not receive is none).
	size, frames := p.batch.pending()
	inv, isInvocation := msg.(*wamp.Invocation)
	refuse, slow := p.cfg.queueRoom(size, frames, n, isInvocation)
	if refuse {
		p.refuseInvocation(inv)
		return
	}
	if slow != "" {
		p.drop(RejectSlowConsumer, slow)
		return
	}
	// Observed before the frame is written: the client's answer to a
	// WELCOME (its first CALL) must find the session open.
	p.observe(msg, len(b))
	if err := p.conn.WriteMessage(p.payloadType, b); err != nil {
		p.writeFailed(err)
		return
	}
	p.batch.framed()
}

// queueRoom judges one more frame of n bytes for a client with size bytes
// in frames frames waiting to be written (batchConn.pending) by the
// out-queue bounds: refuse when it is an INVOCATION for a callee with half
// of them waiting (the caller is answered for the callee instead), or why
// the client is a slow consumer; it fits when both are zero. One frame
// larger than the byte bound still goes when nothing waits.
func (c *peerConfig) queueRoom(size, frames int, n int64, invocation bool) (refuse bool, slowConsumer string) {
	q := int64(size)
	switch {
	case invocation && q > 0 && (q+n > int64(c.outQueueBytes)/2 || frames >= c.outQueue):
		return true, ""
	case q > 0 && q+n > int64(c.outQueueBytes):
		return false, "outbound queue full (bytes)"
	}
	if total := c.queuedTotal.Load(); total > 0 && total+n > c.maxQueuedTotal {
		return false, "outbound queues of all clients full (bytes)"
	}
	if frames >= c.outQueue {
		return false, "outbound queue full (messages)"
	}
	return false, ""
}

// send writes what the socket did not take at once, each write within the
// write timeout, and pings the client when it has been quiet for half the
// keep-alive interval. When encode is done it writes what is left and the
// close frame.
func (p *wsPeer) send() {
	defer close(p.sendDone)
	var tick <-chan time.Time
	if p.cfg.keepAlive > 0 {
		t := time.NewTicker(p.cfg.keepAlive / 2)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-p.batch.wake:
			p.flush()
		case <-tick:
			idle := time.Since(time.Unix(0, p.lastHeard.Load()))
			if idle >= p.cfg.keepAlive/2 && !p.dead.Load() {
				_ = p.conn.WriteControl(websocket.PingMessage, nil, p.deadline())
				p.flush()
			}
		case <-p.encDone:
			if p.flush() {
				_ = p.conn.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, "goodbye"), p.deadline())
				p.flush()
			}
			return
		}
	}
}

// flush writes what is pending, blocking; false when the connection is
// done for.
func (p *wsPeer) flush() bool {
	if err := p.batch.drain(p.deadline); err != nil {
		if !p.dead.Load() {
			p.writeFailed(err)
		}
		return false
	}
	return !p.dead.Load()
}

// writeFailed drops the client whose write failed: as a slow consumer when
// the write timeout passed.
func (p *wsPeer) writeFailed(err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !p.isClosing() {
		p.drop(RejectSlowConsumer, "a write did not complete within the write timeout")
	}
	p.drop("", "")
}

// deadline is the write deadline for the next write: the write timeout,
// and no later than the flush deadline once closing.
func (p *wsPeer) deadline() time.Time {
	d := time.Now().Add(p.cfg.writeTimeout)
	if p.isClosing() && p.flushBy.Before(d) {
		d = p.flushBy
	}
	return d
}

func (p *wsPeer) isClosing() bool {
	select {
	case <-p.closing:
		return true
	default:
		return false
	}
}

// marshal encodes and observes one message; false when it cannot be
// encoded (logged; the connection is fine).
func (p *wsPeer) marshal(msg wamp.Message) ([]byte, bool) {
	b, err := p.serializer.Serialize(msg)
	if err != nil {
		p.cfg.log.Warn("cannot encode a message for a client", slog.String("type", msg.MessageType().String()), slog.Any("err", err))
		return nil, false
	}
	switch msg.(type) {
	case *wamp.Welcome:
		p.inSession.Store(true)
	case *wamp.Goodbye, *wamp.Abort:
		p.inSession.Store(false)
	}
	p.guard.outbound(msg)
	return b, true
}

// observe shows the observer a message whose frame passed the queue's
// bounds: an answer dropped with a slow consumer over them is no answer
// received.
func (p *wsPeer) observe(msg wamp.Message, n int) {
	if p.obs != nil {
		p.obs.sent(msg, n)
		p.obs.toClient(msg)
	}
}
