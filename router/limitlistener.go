package router

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMaxConns bounds the concurrent connections on the WAMP port, from
// accept to close, whether they upgraded or not. An idle WAMP session costs
// about 40 KiB, so 4096 of them about 160 MiB, and they stay well inside a
// typical file descriptor limit, so the last descriptors are never spent on
// idlers.
const DefaultMaxConns = 4096

// refuseTimeout bounds how long a refused connection is kept to be told,
// and maxTelling how many are told at once.
const (
	refuseTimeout = time.Second
	maxTelling    = 256
)

// LimitedListener accepts at most max connections at a time. At the bound,
// a new connection takes the place of the oldest one that has not upgraded
// and is not in a request (connected and silent, or idle between
// requests): such idlers cost a file descriptor each and never get in the
// way of real clients for long. Only when every connection is a WAMP
// session or busy is the new one answered with HTTP 503 and closed,
// without reaching the HTTP server. Both are counted.
type LimitedListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	rejected func(string)
	refusing sync.WaitGroup // connections being told 503
	telling  atomic.Int64   // how many, at most maxTelling

	mu      sync.Mutex
	waiting map[*limitedConn]time.Time // not upgraded, not in a request: since when
}

// LimitListener wraps the WAMP listener so that at most Config.MaxConns
// connections are open at once (DefaultMaxConns when 0). Serve the Router
// on what it returns; closing it waits for the refusals in progress.
func (r *Router) LimitListener(ln net.Listener) *LimitedListener {
	return &LimitedListener{Listener: ln, max: int64(r.maxConns), rejected: r.rejected, waiting: map[*limitedConn]time.Time{}}
}

// ConnState is the http.Server.ConnState of the server on the listener: it
// tells which connections are idlers.
func (l *LimitedListener) ConnState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch state {
	case http.StateNew, http.StateIdle:
		l.waiting[lc] = time.Now()
	default: // active, hijacked (a WAMP session), closed
		delete(l.waiting, lc)
	}
}

// evictIdler closes the oldest idler; false if there is none.
func (l *LimitedListener) evictIdler() bool {
	l.mu.Lock()
	var oldest *limitedConn
	var since time.Time
	for c, t := range l.waiting {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.waiting, oldest)
	l.mu.Unlock()
	if oldest == nil {
		return false
	}
	oldest.Close() // gives its place back
	return true
}

func (l *LimitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
		}
		l.open.Add(-1)
		l.rejected(RejectConnections)
		if l.evictIdler() { // its Close gave its place back
			if l.open.Add(1) <= l.max {
				return &limitedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
			}
			l.open.Add(-1)
		}
		// Telling a refused client why takes up to refuseTimeout and a
		// descriptor; a flood of them is closed at once instead.
		if l.telling.Add(1) > maxTelling {
			l.telling.Add(-1)
			c.Close()
			continue
		}
		l.refusing.Go(func() {
			defer l.telling.Add(-1)
			refuse(c)
		})
	}
}

func (l *LimitedListener) Close() error {
	err := l.Listener.Close()
	l.refusing.Wait()
	return err
}

const busyBody = "503 Service Unavailable: too many connections; retry later\n"

// refuse answers 503 and closes. It reads what the client sent, briefly,
// so that closing with unread data does not reset the connection before
// the client reads the answer.
func refuse(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if _, err := fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(busyBody), busyBody); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.CopyN(io.Discard, c, 64<<10)
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// SyscallConn is the TCP connection's, for the peer's non-blocking writes
// (see batchConn).
func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("a %T has no file descriptor", c.Conn)
	}
	return sc.SyscallConn()
}
