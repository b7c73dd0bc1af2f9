package router

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// Write coalescing. gorilla/websocket writes every message with a system
// call of its own, and under load those writes were the router's largest
// cost (a profile under 16 callers put 39% of the process in system calls).
// When a client's writer finds more frames waiting behind the one in hand,
// it holds them in the batchConn under gorilla and writes them with one
// system call; a lone frame is written at once, as before, so coalescing
// never delays a message.
const (
	// maxBatchFrames and maxBatchBytes bound one coalesced write: the
	// frames a writer takes before writing, and the bytes it holds.
	maxBatchFrames = 64
	maxBatchBytes  = 64 << 10
)

// batchConn is the network connection under a client's websocket.Conn.
// Between hold and release, what gorilla writes is kept in one buffer and
// written by release; otherwise writes pass straight through. Writes may
// come from two goroutines (the client's writer, and gorilla's answers to
// pings and close frames from the reader), hence the mutex.
type batchConn struct {
	net.Conn
	pool *sync.Pool // of *[]byte with capacity maxBatchBytes

	mu      sync.Mutex
	holding bool
	buf     *[]byte // from pool while holding
	err     error   // the first failed write: the connection is done
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
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

// release writes what was held, with one system call, within the write
// deadline gorilla set for the last frame, and stops holding. The buffer
// goes back to the pool: an idle client holds none.
func (c *batchConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = false
	return c.flushLocked()
}

func (c *batchConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.holding {
		if c.buf == nil {
			c.buf = c.pool.Get().(*[]byte)
		}
		if len(*c.buf)+len(b) <= maxBatchBytes {
			*c.buf = append(*c.buf, b...)
			return len(b), nil
		}
	}
	// Too big to hold with the rest (a large message): what is held goes
	// first, then this, each written as it is.
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *batchConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.buf == nil {
		return nil
	}
	b := *c.buf
	var err error
	if len(b) > 0 {
		_, err = c.Conn.Write(b)
	}
	*c.buf = b[:0]
	c.pool.Put(c.buf)
	c.buf = nil
	if err != nil {
		c.err = err
	}
	return err
}

func newBatchPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, 0, maxBatchBytes)
		return &b
	}}
}

// batchingWriter is the http.ResponseWriter the upgrader sees: its Hijack
// puts a batchConn under the WebSocket connection, and keeps it in conn for
// the peer.
type batchingWriter struct {
	http.ResponseWriter
	pool *sync.Pool
	conn *batchConn
}

func (w *batchingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack the connection for the WebSocket: %w", err)
	}
	w.conn = &batchConn{Conn: nc, pool: w.pool}
	return w.conn, rw, nil
}
