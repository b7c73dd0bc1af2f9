package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxHeld bounds what a relayConn holds before it writes; a buffer grown
// past keptHeld is let go once written.
const (
	maxHeld  = 64 << 10
	keptHeld = 8 << 10
)

// relayConn is the network connection under a relay's upstream side
// (relayClientConn is the client's). Writes to it block, within the write
// timeout: a slow upstream holds up the client that sends to it, through
// TCP, as it would without the relay. What the
// relay writes to it while the goroutine that relays towards it works
// through messages it has already read is held, and goes out in one
// system call just before that goroutine reads from its own side again:
// messages that arrived together leave together, and none waits for more
// to come (a held byte goes out before the goroutine can block in a read).
// At most maxHeld bytes go out together. Under load this saves a third or
// more of the writes; a lone message costs what it did.
//
// Like batchConn, it keeps gorilla's per-write deadline from becoming a
// change to the runtime's timers for every message: the socket's write
// deadline moves later only when it would by slack or more.
type relayConn struct {
	net.Conn
	slack time.Duration
	out   heldWrites // what is held there goes out before this side is read; set before the relay starts

	mu       sync.Mutex
	holding  bool
	final    bool      // the relay is ending: no more holding, no write past flushBy
	flushBy  time.Time // set with final
	held     []byte    // what was written while holding, in order
	err      error     // the write that failed; every later one fails alike
	deadline time.Time // the write deadline gorilla asked for
	set      time.Time // the one the socket has
}

// heldWrites is the other side of a relay, as the goroutine reading this
// side holds and releases what is written to it.
type heldWrites interface {
	hold()
	release() error
}

// relayClientConn is the network connection under a relay's client side.
// What goes to the client is a batchConn's to write, as for a client of
// the embedded router: the goroutine relaying from the upstream never
// blocks on a client that is slow to read, so the upstream is never held
// up by one; what waits for the client is bounded by the front's
// -out-queue flags (see relay.toClientFrame) and written by the relay's
// writer goroutine. Like a relayConn, it writes what is held for the
// upstream before it is read, and what the upstream's reader holds for it
// goes out before the upstream is read again.
type relayClientConn struct {
	*batchConn
	out *relayConn // the upstream's; set before the relay starts

	holdMu sync.Mutex // so that no hold comes after finish
	final  bool       // the relay is ending: no more holding; under holdMu
}

func (c *relayClientConn) Read(p []byte) (int, error) {
	if err := c.out.release(); err != nil {
		return 0, &flushError{err}
	}
	defer c.out.hold()
	return c.batchConn.Read(p)
}

func (c *relayClientConn) hold() {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	if !c.final {
		c.batchConn.hold()
	}
}

// release writes what is held as far as the socket takes it now; the
// writer goroutine writes the rest, and a write that fails ends the relay
// there.
func (c *relayClientConn) release() error {
	c.batchConn.release()
	return nil
}

// finish stops holding for good: the relay is ending, and what it writes
// now (close frames, GOODBYE) must go out at once.
func (c *relayClientConn) finish() {
	c.holdMu.Lock()
	c.final = true
	c.holdMu.Unlock()
	c.batchConn.release()
}

// flushError is a read that did not happen because what was held for the
// other side could not be written: that side failed, not this one.
type flushError struct{ err error }

func (e *flushError) Error() string { return "write to the other side of the relay: " + e.err.Error() }
func (e *flushError) Unwrap() error { return e.err }

func (c *relayConn) Read(p []byte) (int, error) {
	if c.out != nil {
		if err := c.out.release(); err != nil {
			return 0, &flushError{err}
		}
		defer c.out.hold()
	}
	return c.Conn.Read(p)
}

func (c *relayConn) hold() {
	c.mu.Lock()
	c.holding = !c.final
	c.mu.Unlock()
}

// finish writes what is held, by flushBy, and stops holding for good: the
// relay is ending, and what it writes now (close frames, GOODBYE) must go
// out at once, by flushBy.
func (c *relayConn) finish(flushBy time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.final, c.flushBy, c.holding = true, flushBy, false
	if c.deadline.IsZero() || c.deadline.After(flushBy) {
		c.deadline = flushBy
	}
	return c.flushLocked()
}

// release writes what is held and stops holding.
func (c *relayConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *relayConn) flushLocked() error {
	if c.err != nil || len(c.held) == 0 {
		return c.err
	}
	c.applyDeadlineLocked()
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if cap(c.held) > keptHeld {
		c.held = nil // a burst's buffer is not kept for the connection's life
	}
	if err != nil {
		c.err = err
	}
	return err
}

func (c *relayConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.holding && len(c.held)+len(p) <= maxHeld {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	c.applyDeadlineLocked()
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *relayConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	if c.final && (t.IsZero() || t.After(c.flushBy)) {
		t = c.flushBy
	}
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *relayConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// applyDeadlineLocked gives the socket the deadline gorilla asked for when
// it is earlier than the socket's, or later by slack or more.
func (c *relayConn) applyDeadlineLocked() {
	if c.deadline.Equal(c.set) {
		return
	}
	if c.set.IsZero() || c.deadline.IsZero() || c.deadline.Before(c.set) || c.deadline.Sub(c.set) >= c.slack {
		c.set = c.deadline
		_ = c.Conn.SetWriteDeadline(c.deadline)
	}
}

// relayingWriter is the http.ResponseWriter the relay's upgrader sees: its
// Hijack puts a relayClientConn under the client's WebSocket connection,
// and keeps it in conn.
type relayingWriter struct {
	http.ResponseWriter
	pool  *sync.Pool    // chunks
	slack time.Duration // of the write deadline
	total *atomic.Int64 // pending bytes over all clients
	conn  *relayClientConn
}

func (w *relayingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack the connection for the WebSocket: %w", err)
	}
	w.conn = &relayClientConn{batchConn: newBatchConn(nc, w.pool, w.slack, w.total)}
	return w.conn, rw, nil
}

// relayDialer dials the upstream with a relayConn under the WebSocket, and
// keeps it in conn.
type relayDialer struct {
	slack time.Duration
	conn  *relayConn
}

func (d *relayDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.conn = &relayConn{Conn: nc, slack: d.slack}
	return d.conn, nil
}

// isFlushError tells a read that failed because a write to the other side
// did.
func isFlushError(err error) bool {
	var fe *flushError
	return errors.As(err, &fe)
}
