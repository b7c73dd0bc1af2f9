package router

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// wsPeer is one client's WebSocket connection as nexus sees it: a
// wamp.Peer. It is ours rather than nexus's transport.NewWebsocketPeer for
// two reasons found under load:
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
//
// Each message is decoded in the receive goroutine and encoded in the send
// goroutine, and shown to the observer right there: observing adds no
// goroutine and no channel hop.
type wsPeer struct {
	conn        *websocket.Conn
	serializer  serialize.Serializer
	payloadType int
	obs         *connObserver // nil when not observing
	rejected    func(string)
	shutdown    *atomic.Bool // the router is closing
	log         *ratelog.Logger

	rd chan wamp.Message // to the router; closed when the client is gone
	wr chan wamp.Message // from the router; never closed, see above

	// inSession is true from WELCOME until a GOODBYE or ABORT is written
	// or a GOODBYE read.
	inSession atomic.Bool

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	recvDone  chan struct{}
	sendDone  chan struct{}
}

// flushTimeout bounds how long Close spends writing what is still queued.
const flushTimeout = 2 * time.Second

func newWSPeer(conn *websocket.Conn, serializer serialize.Serializer, payloadType, outQueue int,
	obs *connObserver, rejected func(string), shutdown *atomic.Bool, log *ratelog.Logger) *wsPeer {
	p := &wsPeer{
		conn:        conn,
		serializer:  serializer,
		payloadType: payloadType,
		obs:         obs,
		rejected:    rejected,
		shutdown:    shutdown,
		log:         log,
		rd:          make(chan wamp.Message),
		wr:          make(chan wamp.Message, outQueue),
		closing:     make(chan struct{}),
		recvDone:    make(chan struct{}),
		sendDone:    make(chan struct{}),
	}
	go p.receive()
	go p.send()
	return p
}

func (p *wsPeer) Recv() <-chan wamp.Message { return p.rd }
func (p *wsPeer) Send() chan<- wamp.Message { return p.wr }
func (p *wsPeer) IsLocal() bool             { return false }

// Close writes what is queued (GOODBYE included), sends the close frame,
// closes the connection and waits for both goroutines. Safe to call more
// than once.
func (p *wsPeer) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		// A client that stopped reading leaves the sender blocked in a
		// write with no deadline; closing the connection unblocks it.
		stuck := time.AfterFunc(flushTimeout+time.Second, func() { p.conn.Close() })
		<-p.sendDone
		stuck.Stop()
		p.conn.Close()
		<-p.recvDone
		if p.obs != nil {
			p.obs.endSession()
		}
	})
}

// receive reads, decodes and observes messages from the client and hands
// them to the router, until the connection fails or the peer closes.
func (p *wsPeer) receive() {
	defer close(p.recvDone)
	defer close(p.rd) // tells the router the client is gone
	for {
		_, b, err := p.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				p.rejected(RejectTooLarge)
				p.log.Warn("closed a connection: message over the size limit",
					slog.String("remote", p.conn.RemoteAddr().String()))
			}
			p.conn.Close() // unblocks the sender if it is writing
			return
		}
		msg, ok := p.decode(b)
		if !ok {
			continue // counted; nexus's peer drops these too
		}
		select {
		case p.rd <- msg:
		case <-p.closing:
			return
		}
	}
}

// decode turns one frame into a message and shows it to the observer.
func (p *wsPeer) decode(b []byte) (wamp.Message, bool) {
	msg, err := p.serializer.Deserialize(b)
	if err != nil {
		p.rejected(RejectUndecodable)
		return nil, false
	}
	if _, bye := msg.(*wamp.Goodbye); bye {
		p.inSession.Store(false)
	}
	if p.obs != nil {
		p.obs.fromClient(msg)
	}
	return msg, true
}

// send encodes, observes and writes what the router sends, until Close.
func (p *wsPeer) send() {
	defer close(p.sendDone)
	broken := false // after a write error, queued messages are discarded
	for {
		select {
		case msg := <-p.wr:
			if !broken && !p.write(msg) {
				broken = true
				p.conn.Close() // ends receive, so the router drops the session
			}
		case <-p.closing:
			if !broken {
				p.flush()
			}
			return
		}
	}
}

// flush writes what is still queued, then GOODBYE if the router is
// shutting down and the session did not get one, then the close frame.
func (p *wsPeer) flush() {
	deadline := time.Now().Add(flushTimeout)
	_ = p.conn.SetWriteDeadline(deadline)
	for drained := false; !drained; {
		select {
		case msg := <-p.wr:
			if !p.write(msg) {
				return
			}
		default:
			drained = true
		}
	}
	if p.shutdown.Load() && p.inSession.Load() {
		// Queued GOODBYEs are written above; this one is for the session
		// whose GOODBYE the router dropped because its queue was full.
		if !p.write(&wamp.Goodbye{Reason: wamp.CloseSystemShutdown, Details: wamp.Dict{}}) {
			return
		}
	}
	_ = p.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, "goodbye"), deadline)
}

// write encodes, observes and writes one message; false on a write error.
func (p *wsPeer) write(msg wamp.Message) bool {
	b, ok := p.encode(msg)
	if !ok {
		return true // logged; the connection is fine
	}
	return p.conn.WriteMessage(p.payloadType, b) == nil
}

func (p *wsPeer) encode(msg wamp.Message) ([]byte, bool) {
	b, err := p.serializer.Serialize(msg)
	if err != nil {
		p.log.Warn("cannot encode a message for a client", slog.String("type", msg.MessageType().String()), slog.Any("err", err))
		return nil, false
	}
	switch msg.(type) {
	case *wamp.Welcome:
		p.inSession.Store(true)
	case *wamp.Goodbye, *wamp.Abort:
		p.inSession.Store(false)
	}
	if p.obs != nil {
		p.obs.toClient(msg)
	}
	return b, true
}
