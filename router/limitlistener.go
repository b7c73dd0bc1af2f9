package router

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns bounds the concurrent connections on the WAMP port, from
// accept to close, whether they upgraded or not. An idle WAMP session costs
// about 40 KiB, so 4096 of them about 160 MiB, and they stay well inside a
// typical file descriptor limit, so the last descriptors are never spent on
// idlers.
const DefaultMaxConns = 4096

// refuseTimeout bounds how long a refused connection is kept to be told.
const refuseTimeout = time.Second

// limitListener accepts at most max connections at a time. A connection
// over the bound is answered with HTTP 503 and closed, without reaching the
// HTTP server, and counted.
type limitListener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	rejected func(string)
	refusing sync.WaitGroup // connections being told 503
}

// LimitListener wraps the WAMP listener so that at most Config.MaxConns
// connections are open at once (DefaultMaxConns when 0). Serve the Router
// on what it returns; closing it waits for the refusals in progress.
func (r *Router) LimitListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, max: int64(r.maxConns), rejected: r.rejected}
}

func (l *limitListener) Accept() (net.Conn, error) {
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
		l.refusing.Go(func() { refuse(c) })
	}
}

func (l *limitListener) Close() error {
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
