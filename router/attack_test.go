package router

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gorilla/websocket"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// Attacks on the WebSocket front (issue 10), each alongside valid traffic
// whose observation must stay exact.

// pptHello announces Payload PassThru Mode in every role, so that nexus
// goes on to read the ppt_* options.
const pptHello = `[1,"realm1",{"roles":{"caller":{"features":{"payload_passthru_mode":true}},` +
	`"callee":{"features":{"payload_passthru_mode":true}},"publisher":{"features":{"payload_passthru_mode":true}},` +
	`"subscriber":{"features":{"payload_passthru_mode":true}}}}]`

// joinRaw dials and joins realm1 with hello.
func joinRaw(t *testing.T, url, hello string) *rawClient {
	t.Helper()
	c := dialRaw(t, url, nil)
	c.send(hello)
	c.expect(2)
	return c
}

// connectClient joins realm1 with nexus's own client.
func connectClient(t *testing.T, url string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.ConnectNet(ctx, url, client.Config{Realm: "realm1", Logger: testkit.QuietStdLog()})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectClosed reads until the connection ends, failing on a timeout.
func (c *rawClient) expectClosed(within time.Duration) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			var ne net.Error
			if ok := asNetError(err, &ne); ok && ne.Timeout() {
				c.t.Fatalf("connection still open after %v", within)
			}
			return
		}
	}
}

func asNetError(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

// TestPayloadPassthruOptionsNexusCannotDigestAreRefused: nexus v3.3.0
// asserts ppt_* options to strings in its dealer and broker goroutines; a
// number or a list there panicked the whole process. The front refuses
// them: a CALL with ERROR, a PUBLISH with ERROR when acknowledged, a YIELD
// with ABORT; a testament may not use ppt_* at all.
func TestPayloadPassthruOptionsNexusCannotDigestAreRefused(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open(), Rejected: rej.add})
	callee := joinRaw(t, wsURL(srv), pptHello)
	callee.send(`[64,1,{},"p"]`)
	callee.expect(65)
	caller := joinRaw(t, wsURL(srv), pptHello)

	caller.send(`[48,2,{"ppt_scheme":"x","ppt_serializer":1},"p",[]]`)
	if e := caller.expect(8); fmt.Sprint(e[2]) != "2" || e[4] != string(wamp.ErrInvalidArgument) {
		t.Fatalf("CALL with a numeric ppt_serializer answered %v", e)
	}
	caller.send(`[48,3,{"ppt_scheme":"x","ppt_keyid":{"a":1}},"p",[]]`)
	caller.expect(8)

	// Valid ppt traffic alongside goes through and is observed.
	caller.send(`[48,4,{"ppt_scheme":"x","ppt_serializer":"native"},"p",[]]`)
	inv := callee.expect(68)
	callee.send(fmt.Sprintf(`[70,%v,{"ppt_scheme":"x","ppt_serializer":"native"},[]]`, inv[1]))
	if res := caller.expect(50); fmt.Sprint(res[1]) != "4" {
		t.Fatalf("valid ppt call answered %v", res)
	}

	pub := joinRaw(t, wsURL(srv), pptHello)
	pub.send(`[16,5,{"ppt_scheme":"x","ppt_cipher":[1]},"t"]`) // not acknowledged: dropped quietly
	pub.send(`[16,6,{"acknowledge":true,"ppt_scheme":"x","ppt_cipher":[1]},"t"]`)
	if e := pub.expect(8); fmt.Sprint(e[2]) != "6" || e[4] != string(wamp.ErrInvalidArgument) {
		t.Fatalf("acknowledged PUBLISH answered %v", e)
	}
	pub.send(`[48,7,{},"wamp.session.add_testament",["t",[],{}],{"publish_options":{"ppt_scheme":"x"}}]`)
	if e := pub.expect(8); fmt.Sprint(e[2]) != "7" || e[4] != string(wamp.ErrInvalidArgument) {
		t.Fatalf("testament with ppt options answered %v", e)
	}
	pub.send(`[16,8,{"acknowledge":true},"t"]`)
	pub.expect(17) // PUBLISHED: the session carries on

	// A YIELD has nobody to answer: the callee is aborted.
	caller.send(`[48,9,{"ppt_scheme":"x"},"p",[]]`)
	inv = callee.expect(68)
	callee.send(fmt.Sprintf(`[70,%v,{"ppt_scheme":"x","ppt_cipher":[1]},[]]`, inv[1]))
	if a := callee.expect(3); a[2] != string(wamp.ErrProtocolViolation) {
		t.Fatalf("YIELD with a list ppt_cipher: %v", a)
	}
	callee.expectClosed(5 * time.Second)
	if e := caller.expect(8); fmt.Sprint(e[2]) != "9" || e[4] != string(wamp.ErrCanceled) {
		t.Fatalf("call to the aborted callee answered %v", e)
	}

	waitUntil(t, "six refusals counted", func() bool { return rej.get(RejectInvalidOption) == 6 })
	rec.waitFor(t, "error 9 wamp.error.canceled")
	for _, want := range []string{"call 4 p 0s", "result 4", "call 9 p 0s"} {
		if !slices.Contains(rec.snapshot(), want) {
			t.Errorf("observer missed %q: %q", want, rec.snapshot())
		}
	}
	// The refused CALLs got an ERROR, as from nexus: errors.
	for _, refused := range []string{"call 2 p 0s", "error 2 " + string(wamp.ErrInvalidArgument),
		"call 3 p 0s", "error 3 " + string(wamp.ErrInvalidArgument)} {
		if !slices.Contains(rec.snapshot(), refused) {
			t.Errorf("observer missed %q: %q", refused, rec.snapshot())
		}
	}
}

// TestSlowConsumerIsDisconnectedAndStallsNobody: a caller that never reads,
// calling a callee everybody shares. Before, its full queue made nexus
// retry the callee's YIELDs, and a good caller alongside got no answer.
func TestSlowConsumerIsDisconnectedAndStallsNobody(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open(), Rejected: rej.add, OutQueueBytes: 256 << 10, MaxMessageSize: 1 << 20})
	callee := connectClient(t, wsURL(srv))
	payload := strings.Repeat("x", 64<<10)
	for procedure, answer := range map[string]func(*wamp.Invocation) wamp.List{
		"echo": func(inv *wamp.Invocation) wamp.List { return inv.Arguments },
		"big":  func(*wamp.Invocation) wamp.List { return wamp.List{payload} },
	} {
		if err := callee.Register(procedure, func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
			return client.InvokeResult{Args: answer(inv)}
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	bad := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 400; id++ { // 25 MiB of answers, never read
		// Writes fail once the router has dropped the slow consumer.
		if err := bad.conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"big",[]]`, id)); err != nil {
			break
		}
	}
	good := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1001; id <= 1010; id++ {
		good.send(fmt.Sprintf(`[48,%d,{},"echo",["hi"]]`, id))
		good.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if res := good.expect(50); fmt.Sprint(res[1]) != fmt.Sprint(id) {
			t.Fatalf("good caller got %v", res)
		}
	}
	waitUntil(t, "the slow consumer counted", func() bool { return rej.get(RejectSlowConsumer) == 1 })
	bad.expectClosed(5 * time.Second)
	for id := 1001; id <= 1010; id++ {
		rec.waitFor(t, fmt.Sprintf("result %d", id))
	}
}

// Clients that each stay under their own byte bound but together pass
// the bound over all clients are slow consumers too, and the bytes they
// held go back to zero once they are gone.
func TestOutQueuesAreBoundedOverAllClients(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Rejected: rej.add, OutQueueBytes: 8 << 20, OutQueueBytesTotal: 1 << 20, MaxMessageSize: 1 << 20})
	callee := connectClient(t, wsURL(srv))
	payload := strings.Repeat("x", 64<<10)
	if err := callee.Register("big", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{payload}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	var bad []*rawClient
	for range 4 {
		c := joinRaw(t, wsURL(srv), thruwayHello)
		bad = append(bad, c)
		for id := 1; id <= 100; id++ { // 6.4 MiB of answers each, never read
			if err := c.conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"big",[]]`, id)); err != nil {
				break
			}
		}
	}
	// (Clients whose answers fit in the kernel's socket buffers queue
	// nothing and stay; the others pass the bound over all clients.)
	r := srv.Config.Handler.(*Router)
	waitUntil(t, "slow consumers counted", func() bool {
		if q := r.peer.queuedTotal.Load(); q > 1<<20+64<<10 {
			t.Fatalf("%d bytes queued over all clients, over the 1 MiB bound", q)
		}
		return rej.get(RejectSlowConsumer) >= 1
	})
	for _, c := range bad {
		c.conn.Close()
	}
	waitUntil(t, "every queued byte given back", func() bool { return r.peer.queuedTotal.Load() == 0 })
	good := joinRaw(t, wsURL(srv), thruwayHello)
	good.send(`[48,1,{},"big",[]]`)
	good.expect(50)
}

// TestShutdownIsQuickWithANonReadingClient: Close returns well within 5 s
// after a client that reads nothing filled its queue. Before, nexus retried
// the callee's YIELDs to it for a minute, and shutdown waited for that.
func TestShutdownIsQuickWithANonReadingClient(t *testing.T) {
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog(), OutQueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	callee := connectClient(t, wsURL(srv))
	payload := strings.Repeat("x", 32<<10)
	if err := callee.Register("big", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{payload}}
	}, nil); err != nil {
		t.Fatal(err)
	}
	bad := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 1000; id++ { // 32 MiB of answers, more than the socket buffers hold
		if err := bad.conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"big",[]]`, id)); err != nil {
			break
		}
	}
	quiet := joinRaw(t, wsURL(srv), thruwayHello) // reads nothing from here on
	for id := 1; id <= 20; id++ {
		quiet.send(fmt.Sprintf(`[48,%d,{},"big",[]]`, id))
	}
	good := joinRaw(t, wsURL(srv), thruwayHello)
	good.send(`[48,1,{},"nobody.registered",[]]`)
	good.expect(8)
	start := time.Now()
	r.Close()
	took := time.Since(start)
	t.Logf("Close took %v", took)
	if took > 4*time.Second {
		t.Fatalf("Close took %v", took)
	}
	good.expect(6) // GOODBYE
}

// TestKeepAliveDropsClientsThatDoNotPong: a client that stops answering
// pings (a vanished host, here one whose ping handler does nothing) is
// dropped; an idle client that answers stays.
func TestKeepAliveDropsClientsThatDoNotPong(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	const keepAlive = 200 * time.Millisecond
	srv := startRouter(t, Config{OpenSession: rec.open(), Rejected: rej.add, KeepAlive: keepAlive})
	mute := joinRaw(t, wsURL(srv), thruwayHello)
	mute.conn.SetPingHandler(func(string) error { return nil })
	alive := joinRaw(t, wsURL(srv), thruwayHello)
	var wg sync.WaitGroup
	defer wg.Wait()
	aliveClosed := make(chan struct{})
	wg.Go(func() { // reads, so gorilla answers pings
		defer close(aliveClosed)
		for {
			if _, _, err := alive.conn.ReadMessage(); err != nil {
				return
			}
		}
	})
	defer alive.conn.Close()

	start := time.Now()
	mute.expectClosed(5 * time.Second)
	if took := time.Since(start); took < 2*keepAlive-50*time.Millisecond {
		t.Errorf("dropped after %v, before twice the keep-alive", took)
	}
	waitUntil(t, "the drop counted", func() bool { return rej.get(RejectKeepAlive) == 1 })
	select {
	case <-aliveClosed:
		t.Fatal("the client that answers pings was dropped too")
	case <-time.After(5 * keepAlive):
	}
	waitUntil(t, "one session closed", func() bool { return countOf(rec.snapshot(), "close") == 1 })
}

// TestConnectionBoundRefusesWith503: idle connections that never upgrade
// count against the bound from accept; over it, HTTP 503.
func TestConnectionBoundRefusesWith503(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog(), Rejected: rej.add, MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(r.LimitListener(ln)) }()
	defer func() { hs.Close(); <-served }()
	url := "ws://" + ln.Addr().String() + "/"

	session := joinRaw(t, url, thruwayHello)
	var idlers []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idlers = append(idlers, c)
	}
	waitUntil(t, "a fourth connection refused", func() bool {
		c, rsp, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(url, nil)
		if c != nil {
			c.Close()
			return false
		}
		return err != nil && rsp != nil && rsp.StatusCode == http.StatusServiceUnavailable
	})
	if n := rej.get(RejectConnections); n < 1 {
		t.Fatalf("refusals counted: %d", n)
	}
	session.send(`[48,1,{},"nobody.registered"]`)
	session.expect(8) // the session in the bound is served

	idlers[0].Close()
	waitUntil(t, "a slot given back", func() bool {
		c, _, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(url, nil)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// TestCallsInFlightAreBoundedPerSession: a callee that never answers no
// longer lets one caller pile up calls in nexus without limit.
func TestCallsInFlightAreBoundedPerSession(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open(), Rejected: rej.add, MaxCallsInFlight: 5})
	callee := joinRaw(t, wsURL(srv), thruwayHello)
	callee.send(`[64,1,{},"hold"]`)
	callee.expect(65)
	caller := joinRaw(t, wsURL(srv), thruwayHello)
	other := joinRaw(t, wsURL(srv), thruwayHello) // has its own bound
	for id := 1; id <= 8; id++ {
		caller.send(fmt.Sprintf(`[48,%d,{},"hold",[]]`, id))
	}
	var invocations []any
	for range 5 {
		invocations = append(invocations, callee.expect(68)[1])
	}
	for id := 6; id <= 8; id++ {
		if e := caller.expect(8); fmt.Sprint(e[2]) != fmt.Sprint(id) || e[4] != string(ErrLimitExceeded) {
			t.Fatalf("call %d over the bound answered %v", id, e)
		}
	}
	other.send(`[48,1,{},"hold",[]]`)
	otherInv := callee.expect(68)[1]

	callee.send(fmt.Sprintf(`[70,%v,{},["done"]]`, invocations[0]))
	caller.expect(50)
	caller.send(`[48,9,{},"hold",[]]`) // a slot is free again
	callee.expect(68)
	callee.send(fmt.Sprintf(`[70,%v,{},[]]`, otherInv))
	other.expect(50)
	waitUntil(t, "three refusals counted", func() bool { return rej.get(RejectCallsInFlight) == 3 })
	rec.waitFor(t, "call 9 hold 0s")
	// The refused calls were answered with an ERROR, as by nexus: errors.
	for id := 6; id <= 8; id++ {
		for _, seen := range []string{fmt.Sprintf("call %d hold 0s", id), fmt.Sprintf("error %d %s", id, ErrLimitExceeded)} {
			if !slices.Contains(rec.snapshot(), seen) {
				t.Errorf("observer did not see %q", seen)
			}
		}
	}
}

// TestTestamentsAreBoundedPerSession: nexus stores testaments without
// limit until the session leaves.
func TestTestamentsAreBoundedPerSession(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Rejected: rej.add, MaxTestaments: 2, MaxTestamentBytes: 4096})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	add := func(id int, body string) []any {
		c.send(fmt.Sprintf(`[48,%d,{},"wamp.session.add_testament",["t",["%s"],{}]]`, id, body))
		return c.recv()
	}
	if m := add(1, "a"); fmt.Sprint(m[0]) != "50" {
		t.Fatalf("first testament: %v", m)
	}
	if m := add(2, strings.Repeat("b", 5000)); fmt.Sprint(m[0]) != "8" || m[4] != string(ErrLimitExceeded) {
		t.Fatalf("a testament over the byte bound: %v", m)
	}
	if m := add(3, "c"); fmt.Sprint(m[0]) != "50" {
		t.Fatalf("second testament: %v", m)
	}
	if m := add(4, "d"); fmt.Sprint(m[0]) != "8" || m[4] != string(ErrLimitExceeded) {
		t.Fatalf("a third testament: %v", m)
	}
	c.send(`[48,5,{},"wamp.session.flush_testaments",[]]`)
	c.expect(50)
	if m := add(6, "e"); fmt.Sprint(m[0]) != "50" {
		t.Fatalf("a testament after flushing: %v", m)
	}
	waitUntil(t, "two refusals counted", func() bool { return rej.get(RejectTestament) == 2 })
}

// TestLoopbackListenerAcceptsLoopbackHostsOnly: a DNS-rebinding page sends
// Host and Origin of its own name; on a loopback listener that is refused.
func TestLoopbackListenerAcceptsLoopbackHostsOnly(t *testing.T) {
	for _, tc := range []struct {
		listen string
		allow  []string
		host   string
		want   int
	}{
		{"127.0.0.1:9090", nil, "evil.example:9090", http.StatusForbidden},
		{"127.0.0.1:9090", nil, "evil.example", http.StatusForbidden},
		{"127.0.0.1:9090", nil, "127.0.0.1:9090", http.StatusSwitchingProtocols},
		{"127.0.0.1:9090", nil, "127.8.9.10", http.StatusSwitchingProtocols},
		{"127.0.0.1:9090", nil, "LOCALHOST:1", http.StatusSwitchingProtocols},
		{"127.0.0.1:9090", nil, "[::1]:9090", http.StatusSwitchingProtocols},
		{"[::1]:9090", nil, "evil.example:9090", http.StatusForbidden},
		{"localhost:9090", nil, "evil.example:9090", http.StatusForbidden},
		{"127.0.0.1:9090", []string{"*.internal:*"}, "router.internal:9090", http.StatusSwitchingProtocols},
		{"127.0.0.1:9090", []string{"*.internal:*"}, "evil.example:9090", http.StatusForbidden},
		{"0.0.0.0:9090", nil, "evil.example:9090", http.StatusSwitchingProtocols},
		{"192.0.2.1:9090", nil, "router.example:9090", http.StatusSwitchingProtocols},
	} {
		t.Run(tc.listen+" "+tc.host, func(t *testing.T) {
			rej := &rejections{n: map[string]int{}}
			srv := startRouter(t, Config{Rejected: rej.add, ListenAddr: tc.listen, AllowHosts: tc.allow})
			h := http.Header{"Host": {tc.host}, "Origin": {"http://" + tc.host}} // what a rebinding page sends
			conn, rsp, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(wsURL(srv), h)
			if conn != nil {
				conn.Close()
			}
			if rsp == nil {
				t.Fatalf("no response: %v", err)
			}
			if rsp.StatusCode != tc.want {
				t.Fatalf("HTTP %d, want %d", rsp.StatusCode, tc.want)
			}
			if wantRej := map[bool]int{true: 1, false: 0}[tc.want == http.StatusForbidden]; rej.get(RejectHost) != wantRej {
				t.Errorf("host refusals %d, want %d", rej.get(RejectHost), wantRej)
			}
		})
	}
}

// nexus keeps every registration and subscription, with its URI, until
// the session leaves: a session may hold MaxRegistrations and
// MaxSubscriptions, each URI at most MaxURILen bytes.
func TestRegistrationsAndSubscriptionsAreBoundedPerSession(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Rejected: rej.add})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	c.send(fmt.Sprintf(`[64,1,{},"%s"]`, strings.Repeat("x", MaxURILen+1)))
	if e := c.expect(8); e[4] != string(wamp.ErrInvalidURI) {
		t.Fatalf("a long URI answered %v", e)
	}
	var first any
	for id := 2; id < 2+MaxRegistrations; id++ {
		c.send(fmt.Sprintf(`[64,%d,{},"p%d"]`, id, id))
		if reg := c.expect(65); id == 2 {
			first = reg[2]
		}
	}
	c.send(`[64,5000,{},"one.too.many"]`)
	if e := c.expect(8); fmt.Sprint(e[2]) != "5000" || e[4] != string(ErrLimitExceeded) {
		t.Fatalf("REGISTER over the bound answered %v", e)
	}
	c.send(fmt.Sprintf(`[66,5001,%v]`, first))
	c.expect(67)
	c.send(`[64,5002,{},"one.more"]`) // a slot is free again
	c.expect(65)
	for id := 1; id <= MaxSubscriptions; id++ {
		c.send(fmt.Sprintf(`[32,%d,{},"t%d"]`, 6000+id, id))
		c.expect(33)
	}
	c.send(`[32,9000,{},"one.too.many"]`)
	if e := c.expect(8); e[4] != string(ErrLimitExceeded) {
		t.Fatalf("SUBSCRIBE over the bound answered %v", e)
	}
	waitUntil(t, "refusals counted", func() bool {
		return rej.get(RejectURITooLong) == 1 && rej.get(RejectRegistrations) == 1 && rej.get(RejectSubscriptions) == 1
	})
}

// At the bound, a new client takes the place of the oldest connection that
// is neither a WAMP session nor in a request: idlers cannot lock clients
// out. Only when every place is a session is it refused.
func TestConnectionBoundEvictsIdlersFirst(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog(), Rejected: rej.add, MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := r.LimitListener(ln)
	hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ConnState: limited.ConnState}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(limited) }()
	defer func() { hs.Close(); <-served }()
	url := "ws://" + ln.Addr().String() + "/"

	first := joinRaw(t, url, thruwayHello)
	for range 2 { // connected, and silent
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitUntil(t, "the idlers accepted", func() bool { return limited.open.Load() == 3 })
	second := joinRaw(t, url, thruwayHello) // in place of an idler
	third := joinRaw(t, url, thruwayHello)  // and of the other
	for _, s := range []*rawClient{first, second, third} {
		s.send(`[48,1,{},"nobody.registered"]`)
		s.expect(8)
	}
	_, rsp, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(url, nil)
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a fourth session: %v %v, want 503", rsp, err)
	}
	if n := rej.get(RejectConnections); n != 3 {
		t.Errorf("counted %d, want 2 evictions and 1 refusal", n)
	}
}

// The per-session bounds hold over all sessions too, and what a session
// held goes back when it leaves, however it leaves.
func TestCallsAndURIsAreBoundedOverAllSessions(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Rejected: rej.add, MaxCallsInFlightTotal: 4, MaxHeldURIBytesTotal: 10})
	r := srv.Config.Handler.(*Router)
	callee := joinRaw(t, wsURL(srv), thruwayHello)
	callee.send(`[64,1,{},"hold"]`) // 4 bytes
	callee.expect(65)
	a, b := joinRaw(t, wsURL(srv), thruwayHello), joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 2; id++ {
		a.send(fmt.Sprintf(`[48,%d,{},"hold",[]]`, id))
		b.send(fmt.Sprintf(`[48,%d,{},"hold",[]]`, id))
	}
	for range 4 {
		callee.expect(68)
	}
	a.send(`[48,3,{},"hold",[]]`)
	if e := a.expect(8); e[4] != string(ErrLimitExceeded) {
		t.Fatalf("a fifth call in flight answered %v", e)
	}
	b.send(`[64,9,{},"toolong"]`) // 7 more bytes: 11 > 10
	if e := b.expect(8); e[4] != string(ErrLimitExceeded) {
		t.Fatalf("a REGISTER over the bytes answered %v", e)
	}
	a.conn.Close() // leaves without GOODBYE: its two calls go back
	waitUntil(t, "a's calls given back", func() bool { return r.peer.totals.calls.Load() == 2 })
	b.send(`[48,4,{},"hold",[]]`)
	callee.expect(68)
	callee.conn.Close()
	waitUntil(t, "the registration given back", func() bool { return r.peer.totals.uriBytes.Load() == 0 })
}

// A callee that reads, but slower than a caller floods it, is pushed back
// on, not disconnected: over half its queue, further INVOCATIONs are
// answered for it with wamp.error.network_failure ("callee blocked"), as
// nexus does, and the callee keeps serving everyone. The callee starts
// reading only once the caller has its first answer, so that what the
// router writes to it piles up beyond the sockets' buffers (25 MiB of
// INVOCATIONs), as a truly slow one's does, whatever the machine's speed.
func TestAFloodedCalleeIsPushedBackNotDropped(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Rejected: rej.add, OutQueueBytes: 256 << 10})
	callee := joinRaw(t, wsURL(srv), thruwayHello)
	callee.send(`[64,1,{},"slow.echo"]`)
	callee.expect(65)
	var serving sync.WaitGroup
	defer serving.Wait()
	defer callee.conn.Close()
	answered := make(chan struct{})
	serving.Go(func() {
		select {
		case <-answered:
		case <-time.After(5 * time.Second):
		}
		for {
			_, b, err := callee.conn.ReadMessage()
			if err != nil {
				return
			}
			// [68,request,...]: the request id is all it needs, and the
			// 128 KiB are not worth decoding.
			rest, ok := bytes.CutPrefix(b, []byte("[68,"))
			request, _, found := bytes.Cut(rest, []byte(","))
			if !ok || !found {
				continue
			}
			yield := fmt.Sprintf(`[70,%s,{},[%d]]`, request, len(b))
			if callee.conn.WriteMessage(websocket.TextMessage, []byte(yield)) != nil {
				return
			}
		}
	})
	flooder := joinRaw(t, wsURL(srv), thruwayHello)
	payload := strings.Repeat("x", 128<<10)
	const calls = 200
	for id := 1; id <= calls; id++ {
		flooder.send(fmt.Sprintf(`[48,%d,{},"slow.echo",["%s"]]`, id, payload))
	}
	results, blocked := 0, 0
	for i := range calls {
		m := flooder.recv()
		if i == 0 {
			close(answered)
		}
		switch {
		case fmt.Sprint(m[0]) == "50":
			results++
		case fmt.Sprint(m[0]) == "8" && m[4] == string(wamp.ErrNetworkFailure):
			blocked++
		default:
			t.Fatalf("the flooder got %v", m)
		}
	}
	if blocked == 0 || results == 0 || rej.get(RejectSlowConsumer) != 0 {
		t.Fatalf("%d results, %d callee blocked, %d slow consumers: want some of each of the first two and none dropped",
			results, blocked, rej.get(RejectSlowConsumer))
	}
	other := connectClient(t, wsURL(srv)) // the callee still serves others
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := other.Call(ctx, "slow.echo", nil, wamp.List{"hi"}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// A CALL the front refuses must not end the call in flight with the same
// id (it used to free that call's place in the bounds, so a client could
// pile up calls in nexus without limit): the client is aborted instead.
func TestARefusedCallReusingAnIDInFlightIsAborted(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open(), Rejected: rej.add, MaxCallsInFlight: 2})
	r := srv.Config.Handler.(*Router)
	callee := joinRaw(t, wsURL(srv), thruwayHello)
	callee.send(`[64,1,{},"hold"]`)
	callee.expect(65)
	caller := joinRaw(t, wsURL(srv), pptHello)
	caller.send(`[48,7,{},"hold",[]]`)
	callee.expect(68)
	caller.send(`[48,7,{"ppt_scheme":"x","ppt_serializer":1},"hold",[]]`)
	if a := caller.expect(3); a[2] != string(wamp.ErrProtocolViolation) {
		t.Fatalf("got %v, want ABORT", a)
	}
	caller.expectClosed(5 * time.Second)
	waitUntil(t, "the caller's call given back", func() bool { return r.peer.totals.calls.Load() == 0 })
	if slices.Contains(rec.snapshot(), "error 7 "+string(wamp.ErrInvalidArgument)) {
		t.Errorf("the call in flight was ended by the refusal: %q", rec.snapshot())
	}
}

// A client that floods pings and reads nothing cannot make the router
// pile up pongs for it, nor stall the goroutine that reads it: a ping is
// answered only while nothing waits to be written to the client, so what
// waits for it stays a pong or so, not the 2.6 MB of pongs it asked for,
// and every ping is read.
func TestPingsWithoutReadingPileUpNoPongs(t *testing.T) {
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.Listener = smallSendBuffers{srv.Listener} // so that the router's side fills soon
	srv.Start()
	t.Cleanup(func() { r.Close(); srv.Close() })
	dialer := websocket.Dialer{Subprotocols: []string{"wamp.2.json"},
		NetDial: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) { // before the connection's window is set
				err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
			}); cerr != nil {
				return cerr
			}
			return err
		}}).Dial}
	conn, _, err := dialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// nexus hangs up on a client that does not join.
	if err := conn.WriteMessage(websocket.TextMessage, []byte(thruwayHello)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, welcome, err := conn.ReadMessage(); err != nil || !bytes.HasPrefix(welcome, []byte("[2,")) {
		t.Fatalf("joining: %s, %v", welcome, err)
	}
	ping := []byte(strings.Repeat("p", 125))
	most := int64(0)
	const pings = 20_000 // 2.6 MB of pongs
	for i := range pings {
		if err := conn.WriteControl(websocket.PingMessage, ping, time.Now().Add(30*time.Second)); err != nil {
			t.Fatalf("ping %d of %d: %v (the router stopped reading)", i+1, pings, err)
		}
		if i%1000 == 0 {
			most = max(most, r.peer.queuedTotal.Load())
		}
	}
	if most > 64<<10 {
		t.Errorf("%d bytes of pongs waited for a client that does not read, want at most 64 KiB", most)
	}
}

// smallSendBuffers accepts TCP connections with a 16 KiB send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		err = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}
