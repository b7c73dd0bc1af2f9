package wamplog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Listener receives WampObserver log lines on one address over UDP (one
// or more newline-separated lines per datagram) and TCP (newline-separated
// lines on a stream, as the original class sent them), and hands them to a
// Ingester.
type Listener struct {
	drops      *udpDropsCollector // the kernel's drops on the UDP socket
	ingester   *Ingester
	udp        *net.UDPConn
	tcp        *net.TCPListener
	maxLineLen int
	maxConns   int
	idle       time.Duration
	log        *slog.Logger

	conns      prometheus.Gauge
	refusals   prometheus.Counter
	idleClosed prometheus.Counter

	mu   sync.Mutex
	open map[net.Conn]struct{}
}

// ListenerOpts configures a Listener.
type ListenerOpts struct {
	// MaxLineLen bounds a line; longer ones are counted as too_long and
	// skipped. DefaultMaxLineLen when 0.
	MaxLineLen int
	// MaxConns bounds concurrent TCP connections. DefaultMaxConns when
	// 0.
	MaxConns int
	// IdleTimeout closes a TCP connection that delivered no byte for
	// that long, so that idle connections cannot hold every one of the
	// MaxConns places: 1,024 of them locked every sender out for good.
	// Its sender is gone then, as on any close: its pending calls end as
	// timeouts at their deadlines. Counted in
	// wamp_observer_log_tcp_idle_closed_total. Default
	// DefaultIdleTimeout; negative turns it off.
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// DefaultMaxLineLen is ListenerOpts.MaxLineLen's default: 64 KiB,
// the most a UDP datagram carries anyway.
const DefaultMaxLineLen = 64 << 10

// DefaultMaxConns is ListenerOpts.MaxConns's default.
const DefaultMaxConns = 1024

// DefaultIdleTimeout is ListenerOpts.IdleTimeout's default. The
// original class keeps its connection open between requests of a PHP-FPM
// worker, which may be quiet for a while; a minute is long enough for that
// and short enough that an idle flood wears off.
const DefaultIdleTimeout = time.Minute

// udpReadBuffer is the socket receive buffer asked for: bursts from many
// PHP processes queue there while the reader catches up. The kernel caps
// it at net.core.rmem_max unless run as root.
const udpReadBuffer = 8 << 20

// Sockets are a UDP socket and a TCP listener bound to the same
// address. They are opened apart from the listener so that the program can
// report a bind error before it starts, and tests can use free ports.
type Sockets struct {
	UDP *net.UDPConn
	TCP *net.TCPListener
}

// Listen binds UDP and TCP on addr. With port 0, both get the same
// free port.
func Listen(addr string) (*Sockets, error) {
	var err error
	for range 10 { // a port free for TCP may be taken for UDP; try a few
		var s *Sockets
		if s, err = bind(addr); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func bind(addr string) (*Sockets, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for log lines on tcp %s: %w", addr, err)
	}
	udp, err := net.ListenPacket("udp", tcp.Addr().String())
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("listen for log lines on udp %s: %w", tcp.Addr(), err)
	}
	return &Sockets{UDP: udp.(*net.UDPConn), TCP: tcp.(*net.TCPListener)}, nil
}

// Addr returns the bound address, the same port for UDP and TCP.
func (s *Sockets) Addr() net.Addr { return s.TCP.Addr() }

// Close closes both sockets.
func (s *Sockets) Close() {
	s.UDP.Close()
	s.TCP.Close()
}

// NewListener returns a listener on socks that feeds ingester. Run it.
func NewListener(reg prometheus.Registerer, socks *Sockets, in *Ingester, opts ListenerOpts) (*Listener, error) {
	if opts.MaxLineLen == 0 {
		opts.MaxLineLen = DefaultMaxLineLen
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Listener{
		ingester:   in,
		udp:        socks.UDP,
		tcp:        socks.TCP,
		maxLineLen: opts.MaxLineLen,
		maxConns:   opts.MaxConns,
		idle:       opts.IdleTimeout,
		log:        opts.Logger,
		open:       map[net.Conn]struct{}{},
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wamp_observer_log_tcp_connections",
			Help: "TCP log connections currently open.",
		}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wamp_observer_log_tcp_refused_total",
			Help: "TCP log connections closed at once because the maximum was open.",
		}),
		idleClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wamp_observer_log_tcp_idle_closed_total",
			Help: "TCP log connections closed because they delivered nothing for the idle timeout.",
		}),
	}
	drops, err := newUDPDropsCollector(l.udp)
	l.drops = drops
	if err != nil {
		l.log.Warn("not exporting wamp_observer_log_udp_kernel_drops_total", slog.Any("err", err))
	}
	for _, c := range []prometheus.Collector{l.conns, l.refusals, l.idleClosed, drops} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register log listener metrics: %w", err)
		}
	}
	if err := l.udp.SetReadBuffer(udpReadBuffer); err != nil {
		l.log.Warn("could not enlarge the UDP receive buffer", slog.Any("err", err))
	}
	return l, nil
}

// Run receives lines until ctx is done, then closes the sockets and every
// connection, waits for its goroutines and returns.
func (l *Listener) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { l.readUDP(ctx) })
	wg.Go(func() { l.acceptTCP(&wg) })
	<-ctx.Done()
	l.udp.Close()
	l.tcp.Close()
	l.mu.Lock()
	for c := range l.open {
		c.Close()
	}
	l.mu.Unlock()
	wg.Wait()
	return nil
}

// idleSweep is how often the UDP reader wakes to forget idle senders.
const idleSweep = time.Second

// udpBatch is how many datagrams one read system call may return
// (recvmmsg): at a few hundred thousand datagrams a second the calls, not
// the parsing, are what costs.
const udpBatch = 32

func (l *Listener) readUDP(ctx context.Context) {
	r := l.ingester.NewReader("udp")
	defer r.Close()
	var batch batchReader = ipv4.NewPacketConn(l.udp)
	if addr, ok := l.udp.LocalAddr().(*net.UDPAddr); ok && addr.IP.To4() == nil {
		batch = ipv6.NewPacketConn(l.udp)
	}
	msgs := make([]ipv4.Message, udpBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 64<<10)}
	}
	lastSweep := time.Now()
	for ctx.Err() == nil {
		if err := l.udp.SetReadDeadline(time.Now().Add(idleSweep)); err != nil {
			return
		}
		n, err := batch.ReadBatch(msgs, 0)
		if time.Since(lastSweep) >= idleSweep {
			r.ForgetIdle()
			lastSweep = time.Now()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("reading log datagrams", slog.Any("err", err))
			continue
		}
		now := l.ingester.tracker.Now() // the batch arrived together
		for _, m := range msgs[:n] {
			var from netip.AddrPort
			if ua, ok := m.Addr.(*net.UDPAddr); ok {
				from = ua.AddrPort()
				from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			}
			l.handleDatagram(r, now, from, m.Buffers[0][:m.N])
		}
	}
}

// batchReader is ipv4.PacketConn or ipv6.PacketConn.
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// handleDatagram hands each line of one datagram to the reader.
func (l *Listener) handleDatagram(r *Reader, now int64, from netip.AddrPort, datagram []byte) {
	lines := 0
	for line := range bytes.SplitSeq(datagram, []byte{'\n'}) {
		switch {
		case len(line) > l.maxLineLen:
			r.RejectTooLong(from, line)
		case len(line) > 0:
			r.handleLine(now, from, line)
		default:
			continue
		}
		lines++
	}
	if lines == 0 {
		r.RejectEmpty(from)
	}
}

func (l *Listener) acceptTCP(wg *sync.WaitGroup) {
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("accepting log connection", slog.Any("err", err))
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		l.mu.Lock()
		if len(l.open) >= l.maxConns {
			l.mu.Unlock()
			l.refusals.Inc()
			c.Close()
			continue
		}
		l.open[c] = struct{}{}
		l.mu.Unlock()
		l.conns.Inc()
		wg.Go(func() {
			defer func() {
				l.mu.Lock()
				delete(l.open, c)
				l.mu.Unlock()
				l.conns.Dec()
				c.Close()
			}()
			l.readTCP(c)
		})
	}
}

// readTCP reads newline-terminated lines from one connection, which is one
// sender.
func (l *Listener) readTCP(c net.Conn) {
	r := l.ingester.NewReader("tcp")
	defer r.Close()
	from, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	stamped := &stampedReader{conn: c, clock: l.ingester.tracker.Now, idle: l.idle}
	br := bufio.NewReaderSize(stamped, l.maxLineLen)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if line = line[:len(line)-1]; len(line) > 0 {
				r.handleLine(stamped.at, from, line)
			}
		case errors.Is(err, bufio.ErrBufferFull):
			r.RejectTooLong(from, line)
			if err := discardLine(br); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					l.idleClosed.Inc()
				}
				return
			}
		default:
			// A last line without its newline is still a line; so is
			// one cut off by the idle timeout, which is a close.
			idle := errors.Is(err, os.ErrDeadlineExceeded)
			if len(line) > 0 && (idle || errors.Is(err, io.EOF)) {
				r.handleLine(stamped.at, from, line)
			}
			if idle {
				l.idleClosed.Inc()
			}
			return
		}
	}
}

// stampedReader notes when each read of a connection returned. A line is
// timed by the read that completed it: bufio only reads when no whole line
// is buffered, so every line it hands out was completed by the latest read.
// Reading the clock before the blocking read instead would stamp a line
// with the moment the connection went idle.
//
// It also arms the idle timeout before each read: bufio reads only when it
// needs more, so every read's deadline is the idle timeout after the
// previous read returned.
type stampedReader struct {
	conn  net.Conn
	clock func() int64
	idle  time.Duration // <= 0: none
	at    int64         // Tracker.Now when the latest read returned
}

func (s *stampedReader) Read(p []byte) (int, error) {
	if s.idle > 0 {
		if err := s.conn.SetReadDeadline(time.Now().Add(s.idle)); err != nil {
			return 0, err
		}
	}
	n, err := s.conn.Read(p)
	s.at = s.clock()
	return n, err
}

// discardLine skips the rest of an over-long line; the read error that
// ends the stream first, if one does.
func discardLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if err == nil {
			return nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// UDPKernelDrops is the kernel's count of log datagrams dropped on the UDP
// socket, as wamp_observer_log_udp_kernel_drops_total shows it; false
// where it cannot be read (off Linux).
func (l *Listener) UDPKernelDrops() (uint64, bool) { return l.drops.drops() }
