package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

// megabyte is the size of the "1 MB" arguments and URIs: under the
// router's default -max-message of 1 MiB with the message around it.
const megabyte = 1_000_000

// attacks are the twelve of issue 10, in its order.
func attacks() []attackSpec {
	return []attackSpec{
		{name: "ppt", limit: 20 * time.Second, run: attackPPT},
		{name: "slow-reader", limit: 60 * time.Second, run: attackSlowReader},
		{name: "non-reading", limit: 60 * time.Second, run: attackNonReading},
		{name: "huge-uris", limit: 60 * time.Second, noGoroutineScrapes: true, run: attackHugeURIs},
		{name: "slots", limit: 30 * time.Second, run: attackSlots,
			args: func(f map[string]bool, s attackScale) []string {
				a := []string{"-max-procedures", strconv.Itoa(s.n(1000))}
				if f["procedure-idle"] {
					a = append(a, "-procedure-idle", "1s")
				}
				return a
			}},
		{name: "slowloris", limit: 60 * time.Second, run: attackSlowloris,
			args: func(f map[string]bool, _ attackScale) []string {
				var a []string
				for name := range f {
					if strings.Contains(name, "idle-timeout") && !strings.HasPrefix(name, "log-") {
						a = append(a, "-"+name, "2s")
					}
				}
				return a
			}},
		{name: "scrape-storm", limit: 60 * time.Second, run: attackScrapeStorm},
		{name: "half-open", limit: 20 * time.Second, run: attackHalfOpen,
			args: func(f map[string]bool, _ attackScale) []string {
				if f["keepalive"] {
					return []string{"-keepalive", "1s"}
				}
				return nil
			}},
		{name: "nexus-state", limit: 150 * time.Second, run: attackNexusState},
		{name: "log-path", limit: 60 * time.Second, run: attackLogPath,
			args: func(f map[string]bool, s attackScale) []string {
				a := []string{"-max-log-conns", strconv.Itoa(s.n(1024))}
				if f["log-idle-timeout"] {
					a = append(a, "-log-idle-timeout", "1s")
				}
				return a
			}},
		{name: "rebinding", limit: 10 * time.Second, run: attackRebinding},
		{name: "lint", limit: 20 * time.Second, run: attackLint},
	}
}

// 1: Payload PassThru options of the wrong type, which nexus v3.3.0
// converts to strings unchecked in its dealer goroutine.
func attackPPT(e *attackEnv) error {
	e.input(`CALL [48,2,{"ppt_scheme":"x","ppt_serializer":1},"p",[]]; YIELD {"ppt_scheme":"x","ppt_cipher":[1]}`)
	ppt := map[string]any{"features": map[string]any{"payload_passthru_mode": true}}
	details := map[string]any{"roles": map[string]any{"caller": ppt, "callee": ppt}}
	rs, err := e.dialRaw(rawOpts{details: details})
	if err != nil {
		return err
	}
	if err := rs.Send(2*time.Second, 64, 1, map[string]any{}, "p"); err != nil {
		return err
	}
	if _, err := rs.ReadUntil(2*time.Second, 65); err != nil {
		return fmt.Errorf("REGISTER: %w", err)
	}
	if err := rs.Send(2*time.Second, 48, 2, map[string]any{"ppt_scheme": "x", "ppt_serializer": 1}, "p", []any{}); err != nil {
		return err
	}
	if reply, err := rs.Read(time.Second); err == nil {
		b, _ := json.Marshal(reply) // the message as it came, not its bytes as numbers
		e.note("CALL answered %s", wampraw.Truncate(string(b), 60))
	}
	if e.sleep(300 * time.Millisecond); e.t.died() {
		e.problem("the CALL killed it")
		return nil
	}
	// The YIELD, in a session of its own: the CALL may have ended the first.
	rs, err = e.dialRaw(rawOpts{details: details})
	if err != nil {
		return err
	}
	if err := rs.Send(2*time.Second, 64, 1, map[string]any{}, "p2"); err != nil {
		return err
	}
	if _, err := rs.ReadUntil(2*time.Second, 65); err != nil {
		return fmt.Errorf("REGISTER: %w", err)
	}
	if err := rs.Send(2*time.Second, 48, 2, map[string]any{}, "p2", []any{}); err != nil {
		return err
	}
	inv, err := rs.ReadUntil(2*time.Second, 68)
	if err != nil {
		return fmt.Errorf("no INVOCATION: %w", err)
	}
	if err := rs.Send(2*time.Second, 70, inv[1], map[string]any{"ppt_scheme": "x", "ppt_cipher": []int{1}}); err != nil {
		return err
	}
	if e.sleep(500 * time.Millisecond); e.t.died() {
		e.problem("the YIELD killed it")
	}
	return nil
}

// 2: a caller that never reads its socket, calling a callee others share.
func attackSlowReader(e *attackEnv) error {
	n, argSize := e.scale.n(10_000), 64<<10
	window := e.scale.d(20*time.Second, 3*time.Second)
	e.input("a non-reading caller sends %d calls of %d KiB to a shared echo callee; a good caller calls it every 50 ms for %v", n, argSize>>10, window)
	callee, err := connectWithin(e.ctx, "ws://"+e.wampAddr+"/", 5*time.Second)
	if err != nil {
		return err
	}
	e.track(closerFunc(func() error { closeClient(callee); return nil }))
	if err := callee.Register("attack.shared", func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: inv.Arguments}
	}, nil); err != nil {
		return err
	}
	bad, err := e.dialRaw(rawOpts{recvBuf: 4096})
	if err != nil {
		return err
	}
	arg := strings.Repeat("a", argSize)
	var sent atomic.Int64
	e.wg.Go(func() {
		for i := range n {
			if bad.Send(window, 48, i+1, map[string]any{}, "attack.shared", []any{arg}) != nil {
				return
			}
			sent.Add(1)
		}
	})
	good, err := connectWithin(e.ctx, "ws://"+e.wampAddr+"/", 5*time.Second)
	if err != nil {
		return err
	}
	defer closeClient(good)
	ok, total := e.callEvery(good, "attack.shared", window)
	// Unblock the bad caller's writer; it stays connected, not reading.
	_ = bad.NetConn().SetWriteDeadline(time.Now())
	e.note("the bad caller got %d calls out", sent.Load())
	if ok < total {
		e.problem("the good caller of the shared callee: %d of %d calls failed", total-ok, total)
	}
	return nil
}

// callEvery calls procedure every 50ms for d with a 2s deadline each.
func (e *attackEnv) callEvery(c *client.Client, procedure string, d time.Duration) (ok, total int) {
	for end := time.Now().Add(d); time.Now().Before(end) && e.ctx.Err() == nil; time.Sleep(50 * time.Millisecond) {
		total++
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		if _, err := c.Call(ctx, procedure, nil, wamp.List{"x"}, nil, nil); err == nil {
			ok++
		}
		cancel()
	}
	return ok, total
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// 3: a callee and subscribers that never read, sent megabytes.
func attackNonReading(e *attackEnv) error {
	calls, events := e.scale.n(1100), e.scale.n(1500)
	e.input("a non-reading callee gets %d calls of 1 MB; 2 non-reading subscribers get %d events of 1 MB", calls, events)
	arg := strings.Repeat("a", megabyte)
	sink, err := e.dialRaw(rawOpts{recvBuf: 4096})
	if err != nil {
		return err
	}
	if err := sink.Send(2*time.Second, 64, 1, map[string]any{}, "attack.sink"); err != nil {
		return err
	}
	if _, err := sink.ReadUntil(2*time.Second, 65); err != nil {
		return fmt.Errorf("REGISTER: %w", err)
	}
	caller, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	e.drain(caller)
	half := e.scale.d(25*time.Second, 4*time.Second)
	sentCalls := 0
	for i := range calls {
		if caller.Send(half, 48, i+1, map[string]any{}, "attack.sink", []any{arg}) != nil {
			break
		}
		sentCalls++
	}
	e.sleep(500 * time.Millisecond)
	e.note("calls sent %d, RSS after them %.0f MiB", sentCalls, e.rssMiB())
	for i := range 2 {
		sub, err := e.dialRaw(rawOpts{recvBuf: 4096})
		if err != nil {
			return err
		}
		if err := sub.Send(2*time.Second, 32, i+1, map[string]any{}, "attack.topic"); err != nil {
			return err
		}
		if _, err := sub.ReadUntil(2*time.Second, 33); err != nil {
			return fmt.Errorf("SUBSCRIBE: %w", err)
		}
	}
	pub, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	e.drain(pub)
	sentEvents := 0
	for i := range events {
		if pub.Send(half, 16, i+1, map[string]any{}, "attack.topic", []any{arg}) != nil {
			break
		}
		sentEvents++
	}
	e.sleep(500 * time.Millisecond)
	e.note("events sent %d, RSS after them %.0f MiB", sentEvents, e.rssMiB())
	return nil
}

// 4: calls to distinct unregistered 1 MB URIs, then the size of a scrape.
func attackHugeURIs(e *attackEnv) error {
	n := e.scale.n(1000)
	e.input("%d calls to distinct unregistered 1 MB URIs, then one scrape", n)
	rs, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	e.drain(rs)
	pad := strings.Repeat("u", megabyte)
	for i := range n {
		msg := []byte(`[48,` + strconv.Itoa(i+1) + `,{},"attack.uri.` + strconv.Itoa(i) + "." + pad + `",[]]`)
		if err := rs.SendBytes(10*time.Second, msg); err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
	}
	got := e.waitReceived(rs, int64(n), e.scale.d(20*time.Second, 3*time.Second))
	rs.Close()
	e.sleep(300 * time.Millisecond)
	e.note("%d answers", got)
	start := time.Now()
	hc := &http.Client{Timeout: e.scale.d(60*time.Second, 10*time.Second)}
	rsp, err := hc.Get(e.t.metricsURL)
	if err != nil {
		e.problem("the scrape failed: %v", err)
		return nil
	}
	size, err := io.Copy(io.Discard, rsp.Body)
	rsp.Body.Close()
	took := time.Since(start)
	e.note("scrape %.0f KiB in %v, RSS after %.0f MiB", float64(size)/(1<<10), took.Round(time.Millisecond), e.rssMiB())
	if err != nil {
		e.problem("the scrape broke off after %d bytes: %v", size, err)
	}
	if size > 64<<20 {
		e.problem("the scrape is %.1f MiB (limit 64 MiB)", float64(size)/(1<<20))
	}
	return nil
}

// 5: REGISTERs and calls to made-up procedures take every slot; then a
// real procedure arrives.
func attackSlots(e *attackEnv) error {
	n := e.scale.n(1000)
	idle := e.flags["procedure-idle"]
	e.input("-max-procedures %d; %d REGISTERs and %d calls to made-up procedures, the attacker leaves, then a real procedure", n, n, n)
	rs, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	e.drain(rs)
	for i := range n {
		if err := rs.Send(5*time.Second, 64, 2*i+1, map[string]any{}, "attack.fake."+strconv.Itoa(i)); err != nil {
			return err
		}
		if err := rs.Send(5*time.Second, 48, 2*i+2, map[string]any{}, "attack.madeup."+strconv.Itoa(i), []any{}); err != nil {
			return err
		}
	}
	e.waitReceived(rs, int64(2*n), 5*time.Second)
	rs.Close()
	if idle {
		e.sleep(1500 * time.Millisecond) // -procedure-idle 1s, and the sweep
	} else {
		e.sleep(300 * time.Millisecond)
	}
	c, err := connectWithin(e.ctx, "ws://"+e.wampAddr+"/", 5*time.Second)
	if err != nil {
		return err
	}
	defer closeClient(c)
	if err := c.Register("attack.real", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{}
	}, nil); err != nil {
		return err
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		_, _ = c.Call(ctx, "attack.real", nil, nil, nil, nil)
		cancel()
	}
	e.sleep(200 * time.Millisecond)
	own, err := e.hasSeries("wamp_router_", "attack.real")
	if err != nil {
		return err
	}
	switch {
	case own:
		e.note("the real procedure has its own series")
	case idle:
		e.problem("the real procedure has no series of its own, with -procedure-idle 1s")
	default:
		e.problem("the real procedure has no series of its own (no -procedure-idle flag)")
	}
	return nil
}

// hasSeries tells whether a family whose name starts with prefix has a
// series with message=procedure.
func (e *attackEnv) hasSeries(prefix, procedure string) (bool, error) {
	mfs, err := scrape(e.http, e.t.metricsURL, nil)
	if err != nil {
		return false, err
	}
	for name, mf := range mfs {
		if strings.HasPrefix(name, prefix) {
			if _, ok := seriesValue(mf, map[string]string{"message": procedure}); ok {
				return true, nil
			}
		}
	}
	return false, nil
}

// 6: complete non-upgrade HTTP requests, then idle, on both ports.
func attackSlowloris(e *attackEnv) error {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	perPort := e.scale.n(10_000)
	if room := (int(lim.Cur) - 400) / 2; perPort > room {
		perPort = room
	}
	// The router gets just the descriptors it has now plus what the idlers
	// can take, as on the machine of the issue (20,000 for 19,990 idlers).
	base := countFDs(e.t.cmd.Process.Pid)
	routerLimit := uint64(base + 2*perPort)
	if err := prlimitNoFile(e.t.cmd.Process.Pid, routerLimit); err != nil {
		e.note("could not set the router's RLIMIT_NOFILE: %v", err)
	}
	e.input("%d idle keep-alive HTTP connections per port (router RLIMIT_NOFILE %d = its %d + 2×%d)", perPort, routerLimit, base, perPort)
	opened := map[string]int{}
	for _, addr := range []string{e.wampAddr, e.metricsAddr} {
		failures := 0
		for i := 0; i < perPort && failures < 3 && e.ctx.Err() == nil; i++ {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(e.ctx, "tcp", addr)
			if err != nil {
				failures++
				continue
			}
			e.track(c)
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
				failures++
				continue
			}
			opened[addr]++
		}
	}
	e.note("idlers open: %d on WAMP, %d on metrics; router fds %d", opened[e.wampAddr], opened[e.metricsAddr], countFDs(e.t.cmd.Process.Pid))
	for name := range e.flags {
		if strings.Contains(name, "idle-timeout") && !strings.HasPrefix(name, "log-") {
			e.sleep(3 * time.Second) // the idle timeout of 2s passed above
			break
		}
	}
	start := time.Now()
	c, err := connectWithin(e.ctx, "ws://"+e.wampAddr+"/", 5*time.Second)
	if err != nil {
		e.problem("a new client cannot join: %v", err)
	} else {
		e.note("a new client joined in %v", time.Since(start).Round(time.Millisecond))
		closeClient(c)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	if rsp, err := hc.Get(e.t.metricsURL); err != nil {
		e.problem("a new scrape fails: %v", err)
	} else {
		_, _ = io.Copy(io.Discard, rsp.Body)
		rsp.Body.Close()
	}
	return nil
}

// prlimitNoFile sets another process's RLIMIT_NOFILE (soft and hard).
func prlimitNoFile(pid int, n uint64) error {
	lim := syscall.Rlimit{Cur: n, Max: n}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_NOFILE),
		uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// 7: concurrent scrapers of a 1,000-procedure router, and slow scrapers
// that read nothing.
func attackScrapeStorm(e *attackEnv) error {
	procs, scrapers, slow := e.scale.n(1000), e.scale.n(200), e.scale.n(2000)
	window := e.scale.d(20*time.Second, 3*time.Second)
	e.input("%d procedures; %d concurrent scrapers and %d slow scrapers for %v", procs, scrapers, slow, window)
	url := "ws://" + e.wampAddr + "/"
	callee, err := connectWithin(e.ctx, url, 5*time.Second)
	if err != nil {
		return err
	}
	defer closeClient(callee)
	caller, err := connectWithin(e.ctx, url, 5*time.Second)
	if err != nil {
		return err
	}
	defer closeClient(caller)
	for i := range procs {
		p := "attack.p" + strconv.Itoa(i)
		if err := callee.Register(p, func(context.Context, *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{}
		}, nil); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		_, err := caller.Call(ctx, p, nil, nil, nil, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("call %s: %w", p, err)
		}
	}
	before, _ := scrapeValue(e.http, e.t.metricsURL, "wamp_router_timeouts_seconds", map[string]string{"message": normalProcedure})
	for range slow {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(e.ctx, "tcp", e.metricsAddr)
		if err != nil {
			break
		}
		e.track(c)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: "+e.metricsAddr+"\r\n\r\n")
	}
	sctx, cancel := context.WithTimeout(e.ctx, window)
	defer cancel()
	transport := &http.Transport{MaxIdleConnsPerHost: scrapers}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	var scrapes atomic.Int64
	var wg sync.WaitGroup
	for range scrapers {
		wg.Go(func() {
			for sctx.Err() == nil {
				req, _ := http.NewRequestWithContext(sctx, http.MethodGet, e.t.metricsURL, nil)
				rsp, err := hc.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, rsp.Body)
				rsp.Body.Close()
				scrapes.Add(1)
			}
		})
	}
	wg.Wait()
	after, err := scrapeValue(e.http, e.t.metricsURL, "wamp_router_timeouts_seconds", map[string]string{"message": normalProcedure})
	e.note("%d scrapes", scrapes.Load())
	if err == nil && after > before {
		e.problem("the router counted %.0f of the normal client's answered calls as timeouts", after-before)
	}
	return nil
}

// 8: a client that stops reading and answering pings, as one that vanished
// without a FIN.
func attackHalfOpen(e *attackEnv) error {
	keepalive := e.flags["keepalive"]
	wait := 5 * time.Second
	if keepalive {
		e.input("a joined client stops reading (no pongs, no FIN); -keepalive 1s")
	} else {
		e.input("a joined client stops reading (no pongs, no FIN); no -keepalive flag")
	}
	s0, err := e.sessions()
	if err != nil {
		return err
	}
	if _, err := e.dialRaw(rawOpts{recvBuf: 4096}); err != nil {
		return err
	}
	start := time.Now()
	for time.Since(start) < wait && e.ctx.Err() == nil {
		n, err := e.sessions()
		if err == nil && n <= s0 {
			e.note("dropped after %.1f s", time.Since(start).Seconds())
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	if keepalive {
		e.problem("still counted in wamp_router_sessions after %v with -keepalive 1s", wait)
	} else {
		e.problem("still counted in wamp_router_sessions after %v (no -keepalive flag)", wait)
	}
	return nil
}

// 9: state nexus keeps without bound.
func attackNexusState(e *attackEnv) error {
	holdCalls, timeoutCalls, testaments := e.scale.n(2_440_000), e.scale.n(500_000), e.scale.n(2800)
	sessions, perSession := 110, 10_000
	if !e.scale.full {
		sessions, perSession = 11, 1000
	}
	e.input("a callee that never answers gets %d calls without timeout (8 callers) and %d with one (4 callers); %d add_testament of 1 MB; %d sessions × %d pending calls leave, then a new client joins",
		holdCalls, timeoutCalls, testaments, sessions, perSession)
	hold, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	if err := hold.Send(2*time.Second, 64, 1, map[string]any{}, "attack.hold"); err != nil {
		return err
	}
	if _, err := hold.ReadUntil(2*time.Second, 65); err != nil {
		return fmt.Errorf("REGISTER: %w", err)
	}
	e.drain(hold)

	// flood sends n calls from k fresh sessions within d, then leaves them
	// connected until the part ends; it returns the calls sent.
	flood := func(n, k int, options string, d time.Duration) (int64, []*rawSession, error) {
		var sent atomic.Int64
		var rss []*rawSession
		for range k {
			rs, err := e.dialRaw(rawOpts{})
			if err != nil {
				return 0, rss, err
			}
			e.drain(rs)
			rss = append(rss, rs)
		}
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for i, rs := range rss {
			wg.Go(func() {
				for j := i; j < n; j += k {
					if time.Now().After(deadline) || e.ctx.Err() != nil {
						return
					}
					msg := []byte(`[48,` + strconv.Itoa(j+1) + `,` + options + `,"attack.hold",[]]`)
					if rs.SendBytes(time.Until(deadline), msg) != nil {
						return
					}
					sent.Add(1)
				}
			})
		}
		wg.Wait()
		return sent.Load(), rss, nil
	}
	leave := func(rss []*rawSession) {
		for _, rs := range rss {
			rs.Close()
		}
	}
	sent, rss, err := flood(holdCalls, 8, "{}", e.scale.d(45*time.Second, 3*time.Second))
	if err != nil {
		return err
	}
	e.sleep(500 * time.Millisecond)
	e.note("%d calls without timeout: RSS %.0f MiB", sent, e.rssMiB())
	leave(rss)
	sent, rss, err = flood(timeoutCalls, 4, `{"timeout":3600000}`, e.scale.d(25*time.Second, 2*time.Second))
	if err != nil {
		return err
	}
	e.sleep(500 * time.Millisecond)
	g, _ := scrapeValue(e.http, e.t.metricsURL, "go_goroutines", nil)
	e.note("%d calls with timeout: RSS %.0f MiB, %.0f goroutines", sent, e.rssMiB(), g)
	leave(rss)

	ts, err := e.dialRaw(rawOpts{})
	if err != nil {
		return err
	}
	e.drain(ts)
	arg := strings.Repeat("t", megabyte)
	nt := 0
	for i := range testaments {
		if ts.Send(e.scale.d(20*time.Second, 2*time.Second), 48, i+1, map[string]any{}, "wamp.session.add_testament",
			[]any{"attack.testament", []any{arg}, map[string]any{}}) != nil {
			break
		}
		nt++
	}
	e.waitReceived(ts, int64(nt), 5*time.Second)
	e.note("%d testaments: RSS %.0f MiB", nt, e.rssMiB())

	sent, rss, err = flood(sessions*perSession, sessions, "{}", e.scale.d(30*time.Second, 2*time.Second))
	if err != nil {
		return err
	}
	e.sleep(500 * time.Millisecond)
	leave(rss)
	start := time.Now()
	c, err := connectWithin(e.ctx, "ws://"+e.wampAddr+"/", e.scale.d(30*time.Second, 5*time.Second))
	took := time.Since(start)
	if err != nil {
		e.problem("after %d sessions with %d pending calls left, a new client could not join in %.1f s", sessions, sent, took.Seconds())
		return nil
	}
	closeClient(c)
	e.note("after %d sessions with %d pending calls left, a new client joined in %v", sessions, sent, took.Round(time.Millisecond))
	if took > 2*time.Second {
		e.problem("joining took %.1f s after the sessions left", took.Seconds())
	}
	return nil
}

// 10: log senders that pin state, idle TCP log connections, and large
// registrations.
func attackLogPath(e *attackEnv) error {
	senders, idle, regSenders, regs := e.scale.n(10_000), e.scale.n(1024), 10, e.scale.n(1024)
	e.input("%d UDP senders with a 10^12 ms CALL each, then a new sender; %d idle TCP log connections (-max-log-conns %d), then a new one; %d senders × %d REGISTER lines of 60 KB",
		senders, idle, idle, regSenders, regs)
	pinned := func(id int) string {
		return `["wamp","in","[48,` + strconv.Itoa(id) + `,{\"timeout\":1000000000000},\"attack.pinned\"]"]` + "\n"
	}
	var socks []net.Conn
	for i := range senders {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, resolveUDP(e.logAddr))
		if err != nil {
			return fmt.Errorf("UDP sender %d: %w", i, err)
		}
		socks = append(socks, c)
		_, _ = io.WriteString(c, pinned(1))
		if i%200 == 199 {
			time.Sleep(2 * time.Millisecond) // no kernel drops
		}
	}
	e.sleep(500 * time.Millisecond)
	// A new sender: a call and its answer must be counted.
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, resolveUDP(e.logAddr))
	if err != nil {
		return err
	}
	_, _ = io.WriteString(c, `["wamp","in","[48,1,{},\"attack.newudp\"]"]`+"\n"+`["wamp","in","[50,1,{},[]]"]`+"\n")
	c.Close()
	if !e.counted("attack.newudp") {
		e.problem("a new UDP sender's call is not counted after %d pinned senders", senders)
	}
	for _, s := range socks {
		s.Close()
	}

	var conns []net.Conn
	for range idle {
		c, err := net.DialTimeout("tcp", e.logAddr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	if e.flags["log-idle-timeout"] {
		e.sleep(1500 * time.Millisecond) // -log-idle-timeout 1s
	} else {
		e.sleep(300 * time.Millisecond)
	}
	if c, err := net.DialTimeout("tcp", e.logAddr, time.Second); err != nil {
		e.problem("a new TCP sender cannot connect: %v", err)
	} else {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = io.WriteString(c, `["wamp","in","[48,1,{},\"attack.newtcp\"]"]`+"\n"+`["wamp","in","[50,1,{},[]]"]`+"\n")
		if !e.counted("attack.newtcp") {
			e.problem("a new TCP sender is not served after %d idle TCP log connections", len(conns))
		}
		c.Close()
	}
	for _, c := range conns {
		c.Close()
	}

	pad := strings.Repeat("r", 60_000)
	var wg sync.WaitGroup
	for s := range regSenders {
		c, err := net.DialTimeout("tcp", e.logAddr, time.Second)
		if err != nil {
			return err
		}
		e.track(c)
		wg.Go(func() {
			_ = c.SetWriteDeadline(time.Now().Add(e.scale.d(20*time.Second, 3*time.Second)))
			var b bytes.Buffer
			b.WriteString(pinned(1))
			for j := range regs {
				b.Reset()
				b.WriteString(`["wamp","in","[64,` + strconv.Itoa(j+2) + `,{},\"attack.reg.` + strconv.Itoa(s) + "." + strconv.Itoa(j) + "." + pad + `\"]"]` + "\n")
				if _, err := c.Write(b.Bytes()); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	e.sleep(500 * time.Millisecond)
	e.note("after the REGISTER lines: RSS %.0f MiB", e.rssMiB())
	return nil
}

// counted tells whether a log-path procedure's answered call shows up
// within 3s.
func (e *attackEnv) counted(procedure string) bool {
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && e.ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		if n, err := scrapeValue(e.http, e.t.metricsURL, "wamp_in_responses_seconds", map[string]string{"message": procedure}); err == nil && n >= 1 {
			return true
		}
	}
	return false
}

func resolveUDP(addr string) *net.UDPAddr {
	a, _ := net.ResolveUDPAddr("udp", addr)
	return a
}

// 11: what a DNS-rebinding page sends to a router on 127.0.0.1.
func attackRebinding(e *attackEnv) error {
	_, port, _ := net.SplitHostPort(e.wampAddr)
	e.input("WebSocket handshake with Host: evil.example:%s, Origin: http://evil.example", port)
	_, err := e.dialRaw(rawOpts{host: "evil.example:" + port, origin: "http://evil.example"})
	if err == nil {
		e.problem("the handshake was accepted and the session joined")
		return nil
	}
	e.note("refused: %v", err)
	return nil
}

// 12: a family name chosen by a log sender, then promtool's linter.
func attackLint(e *attackEnv) error {
	e.input(`one datagram ["php","ms","[48,1,{},\"x\"]"], then promtool check metrics`)
	if _, err := exec.LookPath("promtool"); err != nil {
		e.note("skipped: no promtool")
		return nil
	}
	before, err := e.lint()
	if err != nil {
		return err
	}
	c, err := net.Dial("udp", e.logAddr)
	if err != nil {
		return err
	}
	_, _ = io.WriteString(c, `["php","ms","[48,1,{},\"x\"]"]`+"\n")
	c.Close()
	e.sleep(800 * time.Millisecond) // the call times out after -timeout 500ms
	after, err := e.lint()
	if err != nil {
		return err
	}
	switch {
	case before != "":
		e.problem("promtool fails even before the datagram: %s", before)
	case after != "":
		e.problem("promtool check metrics fails: %s", after)
	}
	return nil
}

// lint runs promtool check metrics on a text scrape; "" means it passed.
func (e *attackEnv) lint() (string, error) {
	rsp, err := e.http.Get(e.t.metricsURL)
	if err != nil {
		return "", err
	}
	defer rsp.Body.Close()
	cmd := exec.CommandContext(e.ctx, "promtool", "check", "metrics")
	cmd.Stdin = rsp.Body
	out, err := cmd.CombinedOutput()
	if err == nil {
		return "", nil
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if first == "" {
		first = err.Error()
	}
	return wampraw.Truncate(first, 160), nil
}
