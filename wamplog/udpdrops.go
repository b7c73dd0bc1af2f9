package wamplog

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// udpDropsCollector exports the kernel's count of datagrams dropped on our
// UDP socket because its receive queue was full: loss the listener cannot
// see by itself. Linux reports it per socket in /proc/net/udp{,6}, which
// procfs reads. The socket is found by its inode, not its port: another
// socket may share the port (SO_REUSEPORT, or one per address family).
type udpDropsCollector struct {
	desc  *prometheus.Desc
	proc  procfs.FS
	inode uint64 // 0: not known, nothing is exported
}

// newUDPDropsCollector watches conn's socket. Off Linux, or without
// /proc, it exports nothing, and the error says why.
func newUDPDropsCollector(conn *net.UDPConn) (*udpDropsCollector, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return newUDPDropsCollectorFor(procfs.FS{}, 0), fmt.Errorf("kernel UDP drops: %w", err)
	}
	inode, err := socketInode(conn)
	if err != nil {
		return newUDPDropsCollectorFor(procfs.FS{}, 0), fmt.Errorf("kernel UDP drops: %w", err)
	}
	return newUDPDropsCollectorFor(fs, inode), nil
}

// newUDPDropsCollectorFor watches the socket with inode in the tables of
// proc; inode 0 exports nothing. Tests give it a /proc of their own.
func newUDPDropsCollectorFor(proc procfs.FS, inode uint64) *udpDropsCollector {
	return &udpDropsCollector{
		desc: prometheus.NewDesc("wamp_observer_log_udp_kernel_drops_total",
			"Log datagrams the kernel dropped because the listener's receive queue was full (Linux only).", nil, nil),
		proc:  proc,
		inode: inode,
	}
}

// socketInode returns the inode of conn's socket, from the link
// /proc/self/fd/<fd> -> "socket:[<inode>]" (Linux).
func socketInode(conn *net.UDPConn) (uint64, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("UDP socket: %w", err)
	}
	var link string
	var linkErr error
	if err := raw.Control(func(fd uintptr) {
		link, linkErr = os.Readlink("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	}); err != nil {
		return 0, err
	}
	if linkErr != nil {
		return 0, linkErr
	}
	digits, isSocket := strings.CutPrefix(link, "socket:[")
	digits, closed := strings.CutSuffix(digits, "]")
	if !isSocket || !closed {
		return 0, fmt.Errorf("file descriptor link %q is no socket", link)
	}
	inode, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("file descriptor link %q: %w", link, err)
	}
	return inode, nil
}

func (c *udpDropsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *udpDropsCollector) Collect(ch chan<- prometheus.Metric) {
	if n, ok := c.drops(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n))
	}
}

// drops reads the drops column of our socket's line in /proc/net/udp and
// /proc/net/udp6 (a socket bound to an IPv6 address, [::] included, is
// listed in the latter); ok is false when neither lists it.
func (c *udpDropsCollector) drops() (n uint64, ok bool) {
	if c.inode == 0 {
		return 0, false
	}
	for _, table := range []func() (procfs.NetUDP, error){c.proc.NetUDP, c.proc.NetUDP6} {
		lines, err := table()
		if err != nil {
			continue // e.g. no IPv6
		}
		for _, l := range lines {
			if l.Inode == c.inode && l.Drops != nil {
				n += *l.Drops
				ok = true
			}
		}
	}
	return n, ok
}
