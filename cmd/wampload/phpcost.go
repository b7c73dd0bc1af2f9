package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// phpCost is what php/bench/observer-cost.php measured: ns per log() call
// of the original TCP class and of ours, with a receiver up and down.
type phpCost struct {
	originalUp, originalDown, oursUp, oursDown int
}

// measurePHPCost runs script, php/bench/observer-cost.php (calls per timed
// loop, best of rounds), against receivers of its own that read and discard as
// fast as they can, and against loopback ports where nothing listens.
func measurePHPCost(ctx context.Context, script string, calls, rounds int) (phpCost, error) {
	rx, err := startDiscard()
	if err != nil {
		return phpCost{}, err
	}
	defer rx.close()
	tcpDown, udpDown := freePort(), freePort() // nothing listens on them
	cmd := exec.CommandContext(ctx, "php", script,
		rx.tcp.Addr().String(), rx.udp.LocalAddr().String(), tcpDown, udpDown,
		strconv.Itoa(calls), strconv.Itoa(rounds))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return phpCost{}, fmt.Errorf("php/bench/observer-cost.php (run from the repository root): %w\n%s", err, ee.Stderr)
		}
		return phpCost{}, fmt.Errorf("php/bench/observer-cost.php: %w", err)
	}
	return parsePHPCost(string(out))
}

func parsePHPCost(out string) (phpCost, error) {
	var c phpCost
	fields := map[string]*int{"original tcp up": &c.originalUp, "original tcp down": &c.originalDown,
		"ours udp up": &c.oursUp, "ours udp down": &c.oursDown}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		p, ok := fields[line[:max(i, 0)]]
		if !ok {
			return c, fmt.Errorf("observer-cost.php: unexpected line %q", line)
		}
		n, err := strconv.Atoi(line[i+1:])
		if err != nil {
			return c, fmt.Errorf("observer-cost.php: %q: %w", line, err)
		}
		*p = n
		delete(fields, line[:i])
	}
	if len(fields) > 0 {
		return c, fmt.Errorf("observer-cost.php printed no figure for %d cases:\n%s", len(fields), out)
	}
	return c, nil
}

// discard is a TCP and a UDP receiver that read and throw away.
type discard struct {
	tcp net.Listener
	udp net.PacketConn
	wg  sync.WaitGroup
	mu  sync.Mutex
	cs  []net.Conn
}

func startDiscard() (*discard, error) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the PHP benchmark: %w", err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tcp.Close()
		return nil, fmt.Errorf("listen for the PHP benchmark: %w", err)
	}
	if uc, ok := udp.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(8 << 20)
	}
	d := &discard{tcp: tcp, udp: udp}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.cs = append(d.cs, c)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() { defer d.wg.Done(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	go func() {
		defer d.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return d, nil
}

func (d *discard) close() {
	d.tcp.Close()
	d.udp.Close()
	d.mu.Lock()
	for _, c := range d.cs {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// benchPHP prints the PHP logger's cost, ours beside the original class's.
func benchPHP(ctx context.Context, rounds int) error {
	fmt.Println("### The PHP logger's cost (php/bench/observer-cost.php)")
	fmt.Println()
	fmt.Printf("One loop of 200,000 `log()` calls of a CALL line per case, %d rounds in turn, best round; php-cli %s.\n\n", rounds, phpVersion(ctx))
	var runs []phpCost
	for range 3 {
		c, err := measurePHPCost(ctx, "php/bench/observer-cost.php", 200_000, rounds)
		if err != nil {
			return err
		}
		runs = append(runs, c)
	}
	span := func(f func(phpCost) int) string {
		lo, hi := f(runs[0]), f(runs[0])
		for _, r := range runs[1:] {
			lo, hi = min(lo, f(r)), max(hi, f(r))
		}
		return fmt.Sprintf("%d–%d", lo, hi)
	}
	ratio := func(a, b func(phpCost) int) string {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, float64(a(r))/float64(b(r)))
		}
		return fmt.Sprintf("%.2f", median(xs))
	}
	up := func(c phpCost) int { return c.originalUp }
	down := func(c phpCost) int { return c.originalDown }
	oursUp := func(c phpCost) int { return c.oursUp }
	oursDown := func(c phpCost) int { return c.oursDown }
	fmt.Println("| receiver | original TCP class, ns/call | ours (UDP, batched), ns/call | ours ÷ original |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| up, reading fast | %s | %s | %s |\n", span(up), span(oursUp), ratio(oursUp, up))
	fmt.Printf("| nothing listening | %s | %s | %s |\n", span(down), span(oursDown), ratio(oursDown, down))
	fmt.Println()
	return nil
}

func phpVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "php", "-r", "echo PHP_VERSION;").Output()
	if err != nil {
		return "?"
	}
	return string(out)
}
