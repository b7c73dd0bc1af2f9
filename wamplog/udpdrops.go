package wamplog

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// udpDropsCollector exports the kernel's count of datagrams dropped on our
// UDP socket because its receive queue was full: loss the listener cannot
// see by itself. Linux reports it per socket in /proc/net/udp{,6}.
type udpDropsCollector struct {
	desc *prometheus.Desc
	port uint16
}

func newUDPDropsCollector(local netip.AddrPort) *udpDropsCollector {
	return &udpDropsCollector{
		desc: prometheus.NewDesc("wamp_observer_log_udp_kernel_drops_total",
			"Log datagrams the kernel dropped because the listener's receive queue was full (Linux only).", nil, nil),
		port: local.Port(),
	}
}

func (c *udpDropsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *udpDropsCollector) Collect(ch chan<- prometheus.Metric) {
	var total float64
	found := false
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		if n, ok := socketDrops(file, c.port); ok {
			total += n
			found = true
		}
	}
	if found {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, total)
	}
}

// socketDrops reads the drops column of the socket bound to port. The
// local address is the second column, hex "ADDR:PORT"; drops is the last.
func socketDrops(file string, port uint16) (float64, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 13 || !strings.HasSuffix(fields[1], want) {
			continue
		}
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		return n, err == nil
	}
	return 0, false
}
