package router

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Writing to a client. gorilla/websocket writes every message with a
// system call of its own, and under load those writes were the router's
// largest cost (a profile under 16 callers put 39% of the process in
// system calls). Stock nexus's peer also wakes one goroutine per message to
// do it; ours must not block the goroutine that takes nexus's messages (see
// wsPeer), which used to cost a second wake-up per message.
//
// The batchConn under a client's websocket.Conn therefore never blocks its
// callers: what gorilla writes is appended to the connection's pending
// bytes, and when the goroutine that framed them lets go (release, or at
// once for a write outside hold), they are written right there with one
// non-blocking writev. Whatever the socket does not take stays pending for
// the client's writer goroutine, which drain wakes to write it, blocking,
// within the write timeout; while it does, newer frames join the pending
// bytes and go with its next write. So a lone frame is written as soon as
// it is framed, by the goroutine that framed it; frames waiting together
// go out in one system call; and a slow client costs a blocked writer of
// its own, never a blocked framer.
const (
	// maxBatchFrames and maxBatchBytes bound what one hold takes before
	// it writes: the frames, and the bytes.
	maxBatchFrames = 64
	maxBatchBytes  = 64 << 10

	// copyLimit: a piece gorilla writes up to this long is copied, a
	// longer one only referenced until it is written. gorilla's own
	// buffer, which it reuses for the next frame, is 4 KiB and a frame
	// header (the upgrader leaves WriteBufferSize at 0: the HTTP server's
	// 4 KiB buffer, or gorilla's 4 KiB default), so a longer piece can only
	// be the payload the writer passed in: the peer's encoded message,
	// which nobody changes afterwards, or a relay's pooled read buffer,
	// which the relay reuses only once settled says nothing is pending.
	copyLimit = 16 << 10

	// chunkSize is the size of the pooled buffers copies go into.
	chunkSize = 64 << 10

	// keptListLen: lists of pieces longer than this are not kept for the
	// next burst.
	keptListLen = 64
)

// errDiscarded is what writes return once the connection's pending bytes
// were discarded (see discard).
var errDiscarded = errors.New("connection closed")

// batchConn is the network connection under a client's websocket.Conn.
// Until start it passes writes straight through (gorilla's handshake
// response); from then on, see above. Writes come from three goroutines:
// the peer's encoder (data frames), its writer (pings, the close frame)
// and gorilla's answers to pings and close frames from the reader (under a
// relay's client: the goroutine relaying from the upstream, the one
// relaying from the client, for the front's own answers, and the pinger);
// drain only from the writer.
type batchConn struct {
	net.Conn
	raw   syscall.RawConn // for non-blocking writes; nil: the writer writes everything
	pool  *sync.Pool      // of *[]byte, chunkSize
	slack time.Duration   // see setDeadline
	total *atomic.Int64   // pending bytes over all clients
	wake  chan struct{}   // tells the writer there is something to drain

	mu       sync.Mutex
	buffered bool // started
	holding  bool
	held     int      // bytes appended since hold
	pieces   [][]byte // pending, in order: slices of chunks, and payloads referenced
	chunks   []chunk  // those pieces are in, in order
	copied   bool     // the last piece is the end of the last chunk: the next copy extends it
	appended int64    // bytes appended since start; chunk.end counts in them
	written  int64    // bytes of them written
	size     int      // bytes pending, those being drained among them
	ends     []int64  // where each frame pending ends (see framed), in appended
	draining bool     // the writer's turn: it writes, or is woken to; a direct write now would overtake it
	err      error
	iov      []syscall.Iovec // for direct writes, under mu
	drained  [][]byte        // the writer's copy of the pieces it writes; its own
	drainIov []syscall.Iovec // the writer's

	deadline time.Time // the write deadline last set on Conn; the writer's
}

func newBatchConn(nc net.Conn, pool *sync.Pool, slack time.Duration, total *atomic.Int64) *batchConn {
	c := &batchConn{Conn: nc, pool: pool, slack: slack, total: total, wake: make(chan struct{}, 1)}
	if sc, ok := nc.(syscall.Conn); ok && directWrites {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// chunk is a pooled buffer copies go into; end is where its last byte is
// in the stream of appended bytes, so that it goes back to the pool as
// soon as that byte is written.
type chunk struct {
	buf *[]byte
	end int64
}

func newChunkPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, 0, chunkSize)
		return &b
	}}
}

// start makes writes non-blocking, for the peer that drains them.
func (c *batchConn) start() {
	c.mu.Lock()
	c.buffered = true
	c.mu.Unlock()
}

// hold starts keeping writes, to write them together on release.
func (c *batchConn) hold() {
	c.mu.Lock()
	c.holding, c.held = true, 0
	c.mu.Unlock()
}

// release stops holding and writes what is pending, as far as the socket
// takes it now; the writer is woken for the rest.
func (c *batchConn) release() {
	c.mu.Lock()
	c.holding = false
	c.pushLocked()
	c.mu.Unlock()
}

// heldBytes is how many bytes were appended since hold.
func (c *batchConn) heldBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// pending is how many bytes wait to be written, and how many frames
// (one partly written among them).
func (c *batchConn) pending() (bytes, frames int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, len(c.ends)
}

// settled tells whether nothing is pending and no write is in progress:
// no piece appended so far is referenced any more.
func (c *batchConn) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size == 0 && !c.draining
}

// framed marks the end of a frame: what was appended so far. The peer's
// bound on frames pending (-out-queue) keeps ends short.
func (c *batchConn) framed() {
	c.mu.Lock()
	if c.size > 0 {
		c.ends = append(c.ends, c.appended)
	}
	c.mu.Unlock()
}

// SetWriteDeadline: a started connection's only blocking writes are the
// writer's, which set their own deadline (see drain); gorilla's, set
// before every frame, would be a change to the runtime's timers for each.
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	buffered := c.buffered
	c.mu.Unlock()
	if buffered {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.buffered {
		n, err := c.Conn.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.appendLocked(p)
	if c.holding {
		c.held += len(p)
	} else {
		c.pushLocked()
	}
	return len(p), nil
}

func (c *batchConn) appendLocked(p []byte) {
	if len(p) == 0 {
		return
	}
	c.size += len(p)
	c.appended += int64(len(p))
	c.total.Add(int64(len(p)))
	if len(p) > copyLimit {
		c.pieces = append(c.pieces, p)
		c.copied = false
		return
	}
	n := len(c.chunks)
	if n == 0 || len(*c.chunks[n-1].buf)+len(p) > chunkSize {
		c.chunks = append(c.chunks, chunk{buf: c.pool.Get().(*[]byte)})
		c.copied = false
		n++
	}
	ch := &c.chunks[n-1]
	ch.end = c.appended
	start := len(*ch.buf)
	*ch.buf = append(*ch.buf, p...) // never grows: chunkSize ≥ copyLimit
	if last := len(c.pieces) - 1; c.copied {
		c.pieces[last] = (*ch.buf)[start-len(c.pieces[last]):] // the copy continues the last piece
	} else {
		c.pieces = append(c.pieces, (*ch.buf)[start:])
	}
	c.copied = true
}

// pushLocked writes what is pending without blocking, unless the writer
// owns the socket; what is left is the writer's.
func (c *batchConn) pushLocked() {
	if c.size == 0 || c.err != nil {
		return
	}
	if !c.draining && c.raw != nil {
		n, err := writev(c.raw, c.pieces, &c.iov, false)
		c.consumeLocked(n)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The deadline of the writer's last write has passed (the
			// runtime then refuses any write, even one the socket
			// would take): the writer sets a new one.
		case err != nil:
			c.failLocked(err)
			c.wakeWriter() // to find the connection done for
			return
		case c.size == 0:
			return
		}
	}
	c.draining = true
	c.wakeWriter()
}

func (c *batchConn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default: // the writer is told already
	}
}

// consumeLocked drops n written bytes from the front of the pending ones.
func (c *batchConn) consumeLocked(n int) {
	if n == 0 {
		return
	}
	c.size -= n
	c.written += int64(n)
	c.total.Add(-int64(n))
	if c.size == 0 {
		c.resetLocked()
		return
	}
	i := 0
	for ; n > 0 && n >= len(c.pieces[i]); i++ {
		n -= len(c.pieces[i])
		c.pieces[i] = nil
	}
	c.pieces[i] = c.pieces[i][n:]
	c.pieces = c.pieces[i:]
	k := 0
	for k < len(c.ends) && c.ends[k] <= c.written {
		k++
	}
	c.ends = c.ends[:copy(c.ends, c.ends[k:])]
	// Chunks written out go back, but for the last, which copies may
	// still extend: a client that never catches up holds only the chunks
	// of what is pending.
	j := 0
	for ; j < len(c.chunks)-1 && c.chunks[j].end <= c.written; j++ {
		c.putChunk(c.chunks[j].buf)
		c.chunks[j] = chunk{}
	}
	c.chunks = c.chunks[j:]
}

func (c *batchConn) putChunk(b *[]byte) {
	*b = (*b)[:0]
	c.pool.Put(b)
}

// resetLocked gives back the chunks once nothing is pending, and the
// lists a burst grew: an idle client keeps none of it.
func (c *batchConn) resetLocked() {
	clear(c.pieces) // referenced payloads may go
	c.pieces = c.pieces[:0]
	for _, ch := range c.chunks {
		c.putChunk(ch.buf)
	}
	clear(c.chunks)
	c.chunks = c.chunks[:0]
	c.copied, c.ends = false, c.ends[:0]
	c.pieces, c.chunks, c.ends, c.iov = shrunk(c.pieces), shrunk(c.chunks), shrunk(c.ends), shrunk(c.iov)
}

// shrunk is an empty list, forgotten if a burst grew it long.
func shrunk[T any](list []T) []T {
	if cap(list) > keptListLen {
		return nil
	}
	return list[:0]
}

// failLocked ends the connection's writing with err and gives back what
// was pending. Chunks the writer may be writing from outside the lock
// (draining) are left to it: once back in the pool, they are another
// client's.
func (c *batchConn) failLocked(err error) {
	if c.err == nil {
		c.err = err
	}
	c.total.Add(-int64(c.size))
	c.size = 0
	if !c.draining {
		c.resetLocked()
	}
}

// drain writes what is pending, blocking, each write within the deadline
// deadline gives when it starts, until nothing is; for the writer, when
// woken. It returns the write's error, after which nothing is written.
func (c *batchConn) drain(deadline func() time.Time) error {
	for {
		c.mu.Lock()
		if c.err != nil || c.size == 0 {
			c.draining = false
			err := c.err
			c.mu.Unlock()
			c.drained, c.drainIov = shrunk(c.drained), shrunk(c.drainIov)
			return err
		}
		c.draining = true
		// The pieces are written outside the lock, while new ones are
		// appended: a copy of the list, whose chunks stay (only
		// consumeLocked and resetLocked give chunks back, and they run
		// under the lock once these bytes are counted written). At most
		// maxBatchBytes a write, as a client gets the write timeout for
		// that much, not for all that is pending.
		n, size := 0, 0
		for n < len(c.pieces) && n < maxIovecs && (n == 0 || size+len(c.pieces[n]) <= maxBatchBytes) {
			size += len(c.pieces[n])
			n++
		}
		pieces := append(c.drained[:0], c.pieces[:n]...)
		if len(pieces[0]) > maxBatchBytes { // a large payload, referenced
			pieces[0] = pieces[0][:maxBatchBytes]
		}
		c.mu.Unlock()

		err := c.setDeadline(deadline())
		n = 0
		if err == nil {
			if c.raw != nil {
				n, err = writev(c.raw, pieces, &c.drainIov, true)
			} else {
				var n64 int64
				bufs := net.Buffers(pieces)
				n64, err = bufs.WriteTo(c.Conn)
				n = int(n64)
			}
		}
		clear(pieces)
		c.drained = pieces
		c.mu.Lock()
		if c.err != nil { // failed meanwhile (discard, or a pong's write): what was pending is given back
			c.draining = false
			c.resetLocked()
		} else {
			c.consumeLocked(n)
			if err != nil {
				c.draining = false
				c.failLocked(err)
			}
		}
		c.mu.Unlock()
	}
}

// setDeadline sets the connection's write deadline when t is earlier than
// the one set, or later by more than slack: each is a change to the
// runtime's timers, and a writer draining often would change them for
// every write. A write still ends within its timeout, and up to slack
// before it. Only drain calls it.
func (c *batchConn) setDeadline(t time.Time) error {
	if !c.deadline.IsZero() && !t.Before(c.deadline) && t.Sub(c.deadline) <= c.slack {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return fmt.Errorf("set the write deadline: %w", err)
	}
	c.deadline = t
	return nil
}

// discard drops what is still pending once the peer is done writing, and
// fails further writes.
func (c *batchConn) discard() {
	c.mu.Lock()
	c.failLocked(errDiscarded)
	c.mu.Unlock()
}

// batchingWriter is the http.ResponseWriter the upgrader sees: its Hijack
// puts a batchConn under the WebSocket connection, and keeps it in conn for
// the peer.
type batchingWriter struct {
	http.ResponseWriter
	pool  *sync.Pool    // chunks
	slack time.Duration // of the write deadline
	total *atomic.Int64 // pending bytes over all clients
	conn  *batchConn
}

func (w *batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack the connection for the WebSocket: %w", err)
	}
	w.conn = newBatchConn(nc, w.pool, w.slack, w.total)
	return w.conn, rw, nil
}
