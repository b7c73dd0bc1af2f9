package router

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Write coalescing. gorilla/websocket writes every message with a system
// call of its own (and, over a connection that is not a bare TCP one, two
// for a message longer than its 4 KiB buffer: header, then payload), and
// under load those writes were the router's largest cost
// (a profile under 16 callers put 39% of the process in system calls).
// The client's writer instead holds what gorilla writes in the batchConn
// under it, for the frame in hand and for any more already waiting behind
// it, and writes it all with one writev. A lone frame is written as soon
// as gorilla has framed it: coalescing never waits for company.
const (
	// maxBatchFrames and maxBatchBytes bound one coalesced write: the
	// frames a writer takes before writing, and the bytes it holds.
	maxBatchFrames = 64
	maxBatchBytes  = 64 << 10

	// copyLimit: a piece gorilla writes up to this long is copied, a
	// longer one only referenced until the write. gorilla's own buffer,
	// which it reuses for the next frame, is 4 KiB and a frame header
	// (the upgrader leaves WriteBufferSize at 0: the HTTP server's 4 KiB
	// buffer, or gorilla's 4 KiB default), so a longer piece can only be
	// the payload the writer passed in, which stays untouched until the
	// writer's release.
	copyLimit = 16 << 10
)

// batch is what a batchConn holds between hold and release: copied pieces
// in scratch, and the list of pieces to write (slices of scratch, and
// payloads referenced). Pooled: an idle client holds none.
type batch struct {
	scratch []byte   // capacity maxBatchBytes; never grown, so slices of it stay valid
	pieces  [][]byte // in order
	size    int      // bytes in pieces
	copied  bool     // the last piece is the end of scratch: the next copy extends it
}

// batchConn is the network connection under a client's websocket.Conn.
// Between hold and release, what gorilla writes is kept in a batch and
// written by release with one system call; otherwise writes pass straight
// through. Writes come from two goroutines (the client's writer, and
// gorilla's answers to pings and close frames from the reader), hence the
// mutex.
type batchConn struct {
	net.Conn
	pool  *sync.Pool    // of *batch
	slack time.Duration // see SetWriteDeadline

	mu       sync.Mutex
	holding  bool
	b        *batch    // from pool while holding
	err      error     // the first failed write: the connection is done
	deadline time.Time // the write deadline last set on Conn
}

// SetWriteDeadline sets the connection's write deadline when t is earlier
// than the one set, or later by more than slack. gorilla sets it before
// every frame, even one that is only held, and each is a change to the
// runtime's timers; this way a write still ends within its timeout, and up
// to slack before it.
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.deadline.IsZero() && !t.IsZero() && !t.Before(c.deadline) && t.Sub(c.deadline) <= c.slack {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	c.deadline = t
	return nil
}

// hold starts keeping writes for one coalesced write.
func (c *batchConn) hold() {
	c.mu.Lock()
	c.holding = true
	c.mu.Unlock()
}

// held is how many bytes wait for release.
func (c *batchConn) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.b == nil {
		return 0
	}
	return c.b.size
}

// release writes what was held, with one system call, within the write
// deadline gorilla set for the last frame, and stops holding.
func (c *batchConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.holding {
		return c.writeLocked(p)
	}
	if c.b == nil {
		c.b = c.pool.Get().(*batch)
	}
	b := c.b
	if len(p) > copyLimit {
		b.pieces = append(b.pieces, p)
		b.copied = false
		b.size += len(p)
		return len(p), nil
	}
	if len(b.scratch)+len(p) > cap(b.scratch) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		c.b = c.pool.Get().(*batch)
		b = c.b
	}
	start := len(b.scratch)
	b.scratch = append(b.scratch, p...)
	if last := len(b.pieces) - 1; b.copied {
		b.pieces[last] = b.scratch[start-len(b.pieces[last]):] // the copy continues the last piece
	} else {
		b.pieces = append(b.pieces, b.scratch[start:])
	}
	b.copied = true
	b.size += len(p)
	return len(p), nil
}

func (c *batchConn) writeLocked(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *batchConn) flushLocked() error {
	b := c.b
	if b == nil {
		return c.err
	}
	c.b = nil
	var err error
	switch {
	case c.err != nil:
		err = c.err
	case len(b.pieces) == 1:
		_, err = c.Conn.Write(b.pieces[0])
	case len(b.pieces) > 1:
		// writev where the connection supports it (TCP does), and
		// WriteTo consumes its own copy of the list.
		v := net.Buffers(b.pieces)
		_, err = v.WriteTo(c.Conn)
	}
	clear(b.pieces) // referenced payloads may go
	b.pieces, b.scratch, b.size, b.copied = b.pieces[:0], b.scratch[:0], 0, false
	c.pool.Put(b)
	if err != nil && c.err == nil {
		c.err = err
	}
	return err
}

func newBatchPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		return &batch{scratch: make([]byte, 0, maxBatchBytes)}
	}}
}

// batchingWriter is the http.ResponseWriter the upgrader sees: its Hijack
// puts a batchConn under the WebSocket connection, and keeps it in conn for
// the peer.
type batchingWriter struct {
	http.ResponseWriter
	pool  *sync.Pool
	slack time.Duration // of the batchConn's write deadline
	conn  *batchConn
}

func (w *batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack the connection for the WebSocket: %w", err)
	}
	w.conn = &batchConn{Conn: nc, pool: w.pool, slack: w.slack}
	return w.conn, rw, nil
}
