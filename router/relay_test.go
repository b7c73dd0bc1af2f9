package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

// The relay's tests (Config.Upstream) put a WebSocket peer of their own
// behind it where the bytes that arrive there, or the way the upstream
// fails, are the point; the tests at the top of the repository put stock
// nexus and this program there.

// frame is one WebSocket message as a peer read it.
type frame struct {
	typ  int
	data string
}

// upstreamPeer is a WebSocket server standing for the upstream router: it
// records every message it reads, answers each with what answer returns,
// and offers its connections to the test.
type upstreamPeer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []frame
	conns chan *websocket.Conn
	close chan *websocket.CloseError // the close frames it read
	ended chan struct{}              // a connection ended, whatever the reason
	// stalled holds up a connection that was answered stall until the
	// test ends.
	stalled chan struct{}
	roots   *x509.CertPool // over TLS: what vouches for its certificate
}

// stall, as an answer, makes the upstream peer go silent on that
// connection: it reads nothing more, so it answers no ping either.
const stall = "\x00stall"

// asBinary prefixes an answer the upstream peer sends as a binary frame.
const asBinary = "\x00binary:"

func startUpstreamPeer(t *testing.T, protocols []string, answer func(frame) []string) *upstreamPeer {
	t.Helper()
	return newUpstreamPeer(t, protocols, answer, false)
}

// startUpstreamPeerTLS is startUpstreamPeer over wss://, with a
// certificate that roots vouches for.
func startUpstreamPeerTLS(t *testing.T, answer func(frame) []string) *upstreamPeer {
	t.Helper()
	return newUpstreamPeer(t, []string{"wamp.2.json"}, answer, true)
}

func newUpstreamPeer(t *testing.T, protocols []string, answer func(frame) []string, overTLS bool) *upstreamPeer {
	t.Helper()
	u := &upstreamPeer{conns: make(chan *websocket.Conn, 16), close: make(chan *websocket.CloseError, 16), ended: make(chan struct{}, 16),
		stalled: make(chan struct{})}
	upgrader := websocket.Upgrader{Subprotocols: protocols}
	var wg sync.WaitGroup
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		u.conns <- conn
		wg.Go(func() {
			defer func() { u.ended <- struct{}{} }()
			defer conn.Close()
			for {
				typ, b, err := conn.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						u.close <- ce
					}
					return
				}
				f := frame{typ, string(b)}
				u.mu.Lock()
				u.got = append(u.got, f)
				u.mu.Unlock()
				for _, a := range answer(f) {
					if a == stall {
						<-u.stalled // reads nothing more, answers no ping
						return
					}
					typ := websocket.TextMessage
					if rest, ok := strings.CutPrefix(a, asBinary); ok {
						typ, a = websocket.BinaryMessage, rest
					}
					if err := conn.WriteMessage(typ, []byte(a)); err != nil {
						return
					}
				}
			}
		})
	})
	if overTLS {
		u.srv = httptest.NewTLSServer(handler)
		u.roots = x509.NewCertPool()
		u.roots.AddCert(u.srv.Certificate())
	} else {
		u.srv = httptest.NewServer(handler)
	}
	t.Cleanup(func() {
		close(u.stalled)
		u.srv.CloseClientConnections()
		u.srv.Close()
		wg.Wait()
	})
	return u
}

func (u *upstreamPeer) received() []frame {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.got)
}

// welcomeAnswers answers a HELLO with a WELCOME and a CALL with its RESULT,
// in JSON spelled as no encoder of ours would.
func welcomeAnswers(f frame) []string {
	switch {
	case strings.HasPrefix(f.data, "[1,"):
		return []string{`[2,  77 ,{"roles" : {"dealer":{}}, "é":"\u00e9"}]`}
	case strings.HasPrefix(f.data, "[48,"):
		var id int
		fmt.Sscanf(f.data, "[48,%d,", &id)
		return []string{fmt.Sprintf(`[50,%d,{},["r\u00e9sult",1.50,  {"z":1,"a":2}]]`, id)}
	}
	return nil
}

func startRelay(t *testing.T, upstream string, cfg Config) *httptest.Server {
	t.Helper()
	cfg.Upstream = upstream
	return startRouter(t, cfg)
}

// TestTheRelayPassesEveryByteBothWays: what the client sends reaches the
// upstream byte for byte, in its frame type, and what the upstream sends
// reaches the client alike, including a binary message nobody can decode;
// on the way, the observer sees the session and its call as it would in
// the embedded router. A message from the client that the relay cannot
// decode is dropped and counted, as in the embedded router: it would pass
// the guard unseen. The subprotocol is the one the upstream chose of those
// the client offered.
func TestTheRelayPassesEveryByteBothWays(t *testing.T) {
	garbage := "\x00not WAMP\xff"
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, "[48,") {
			return append(welcomeAnswers(f), asBinary+garbage)
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRelay(t, wsURL(up.srv), Config{OpenSession: rec.open(), Rejected: rej.add})

	d := websocket.Dialer{Subprotocols: []string{"wamp.2.msgpack", "wamp.2.json"}}
	conn, _, err := d.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.Subprotocol(); got != "wamp.2.json" {
		t.Errorf("subprotocol %q, want the upstream's choice wamp.2.json", got)
	}
	sent := []frame{
		{websocket.TextMessage, `[1, "realm1", {"roles": {"caller": {}}, "agent":"t\u00e9st"}]`},
		{websocket.BinaryMessage, garbage}, // dropped
		{websocket.TextMessage, `[48,  7, {}, "relay.proc", ["\u00e9", 1.0, 1e3]]`},
	}
	read := func() frame {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, b, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return frame{typ, string(b)}
	}
	var got []frame
	for i, f := range sent {
		if err := conn.WriteMessage(f.typ, []byte(f.data)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			got = append(got, read()) // WELCOME
		}
	}
	got = append(got, read(), read())
	want := []frame{
		{websocket.TextMessage, welcomeAnswers(sent[0])[0]},
		{websocket.TextMessage, welcomeAnswers(sent[2])[0]},
		{websocket.BinaryMessage, garbage},
	}
	if !slices.Equal(got, want) {
		t.Errorf("the client got\n%v\nwant what the upstream sent\n%v", got, want)
	}
	waitUntil(t, "the upstream got HELLO and CALL", func() bool { return len(up.received()) == 2 })
	if got, want := up.received(), []frame{sent[0], sent[2]}; !slices.Equal(got, want) {
		t.Errorf("the upstream got\n%v\nwant what the client sent but the undecodable\n%v", got, want)
	}
	rec.waitFor(t, "result 7")
	if got, want := rec.snapshot(), []string{"open", "call 7 relay.proc 0s", "result 7"}; !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
	if n := rej.get(RejectUndecodable); n != 1 {
		t.Errorf("%d undecodable messages counted, want the client's 1", n)
	}
}

// TestAnUnreachableUpstreamGetsTheClientA502: with the upstream down, the
// client's handshake is answered HTTP 502 with the reason, and counted.
func TestAnUnreachableUpstreamGetsTheClientA502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "ws://" + ln.Addr().String() + "/"
	ln.Close()
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, down, Config{Rejected: rej.add})
	_, rsp, err := wampraw.Dial(context.Background(), wsURL(srv), wampraw.Options{Timeout: 5 * time.Second})
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusBadGateway {
		t.Fatalf("handshake: %v, response %v; want HTTP 502", err, rsp)
	}
	if n := rej.get(RejectUpstreamUnavailable); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectUpstreamUnavailable)
	}
}

// TestALostUpstreamClosesTheClientWithTheReason: when the upstream's
// connection drops under a session (no close frame), the client gets close
// code 1011 with the reason, the loss is counted, and the call in flight
// ends with the session, in no outcome.
func TestALostUpstreamClosesTheClientWithTheReason(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, "[48,") {
			return nil // the call stays in flight
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRelay(t, wsURL(up.srv), Config{OpenSession: rec.open(), Rejected: rej.add})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	c.send(`[48,1,{},"relay.hang",[]]`)
	rec.waitFor(t, "call 1 relay.hang 0s")
	(<-up.conns).NetConn().Close() // as a killed router's would

	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != closeUpstreamLost || !strings.Contains(ce.Text, "upstream") {
		t.Fatalf("the client's connection ended with %v, want close code %d naming the upstream", err, closeUpstreamLost)
	}
	if n := rej.get(RejectUpstreamLost); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectUpstreamLost)
	}
	rec.waitFor(t, "close")
	if got := rec.snapshot(); slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "result") || strings.HasPrefix(e, "error") }) {
		t.Errorf("observed %q: the lost call has an outcome", got)
	}
}

// TestCloseCodesPassThroughTheRelay: the close code and reason one side
// sends reach the other, and a clean close is no upstream lost.
func TestCloseCodesPassThroughTheRelay(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, welcomeAnswers)
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add})

	// The client closes: the upstream gets its code.
	c := joinRaw(t, wsURL(srv), thruwayHello)
	<-up.conns
	if err := c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "done here"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case ce := <-up.close:
		if ce.Code != 4000 || ce.Text != "done here" {
			t.Errorf("the upstream got close %d %q, want 4000 %q", ce.Code, ce.Text, "done here")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got no close frame")
	}

	// The upstream closes: the client gets its code.
	c = joinRaw(t, wsURL(srv), thruwayHello)
	upConn := <-up.conns
	if err := upConn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "restarting"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || ce.Text != "restarting" {
		t.Errorf("the client's connection ended with %v, want the upstream's close 1013 %q", err, "restarting")
	}
	if n := rej.get(RejectUpstreamLost); n != 1 {
		// The upstream left the client's session open: that is a loss.
		t.Errorf("%d %s counted, want 1", n, RejectUpstreamLost)
	}
}

// TestARelayedClientThatDoesNotReadIsDroppedAndStallsNobody: the upstream
// floods a client that never reads; what waits for it in the relay stays
// within the front's bound in bytes (-out-queue-bytes), and it is dropped
// as a slow consumer at that bound, long before the write timeout (an
// hour here): the upstream's connection is read all along, so an upstream
// router never has to queue for that client. (Blocking on the client
// instead left stock nexus queueing 1 MB messages for it, 2 GB for three
// such clients.) Its upstream connection is then closed, and another
// client through the same relay is answered throughout.
func TestARelayedClientThatDoesNotReadIsDroppedAndStallsNobody(t *testing.T) {
	payload := strings.Repeat("x", 64<<10)
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, `[48,1,{},"flood"`) {
			flood := make([]string, 400) // 25 MiB
			for i := range flood {
				flood[i] = `[36,1,1,{},["` + payload + `"]]`
			}
			return flood
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add, WriteTimeout: time.Hour})
	bad := dialRaw(t, wsURL(srv), nil)
	bad.send(thruwayHello)
	bad.expect(2)
	bad.send(`[48,1,{},"flood",[]]`) // and never read again
	good := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 10; id++ {
		good.send(fmt.Sprintf(`[48,%d,{},"echo",[]]`, id))
		good.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if res := good.expect(50); fmt.Sprint(res[1]) != fmt.Sprint(id) {
			t.Fatalf("good caller got %v", res)
		}
	}
	waitUntil(t, "the slow consumer dropped at the bound in bytes", func() bool { return rej.get(RejectSlowConsumer) == 1 })
	select {
	case <-up.ended:
	case <-time.After(flushTimeout + 2*time.Second):
		t.Fatal("the flooding upstream connection is still open")
	}
}

// TestTheRelayAppliesTheFrontsLimits: a CALL over the session's bound is
// answered by the relay, as by the embedded router, and never reaches the
// upstream; a message over the size limit closes the client.
func TestTheRelayAppliesTheFrontsLimits(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, "[48,") {
			return nil // every call stays in flight
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add, MaxCallsInFlight: 2, MaxMessageSize: 1 << 10})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 3; id++ {
		c.send(fmt.Sprintf(`[48,%d,{},"relay.hang",[]]`, id))
	}
	if e := c.expect(8); fmt.Sprint(e[2]) != "3" || fmt.Sprint(e[4]) != string(ErrLimitExceeded) {
		t.Errorf("the third call got %v, want ERROR %s", e, ErrLimitExceeded)
	}
	waitUntil(t, "two calls upstream", func() bool { return len(up.received()) == 3 })
	if n := rej.get(RejectCallsInFlight); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectCallsInFlight)
	}
	c.send(`[48,4,{},"relay.hang",["` + strings.Repeat("x", 2<<10) + `"]]`)
	c.expectClosed(5 * time.Second)
	waitUntil(t, "the message too large counted", func() bool { return rej.get(RejectTooLarge) == 1 })
	if got := up.received(); len(got) != 3 {
		t.Errorf("the upstream got %d messages, want HELLO and two CALLs", len(got))
	}
}

// TestRelayShutdownSaysGoodbyeBothWaysQuickly: closing the router ends
// every relayed session with GOODBYE to the client and to the upstream,
// then close frames; with a client that does not read, within the flush
// deadline.
func TestRelayShutdownSaysGoodbyeBothWaysQuickly(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, welcomeAnswers)
	r, err := New(Config{Realm: "realm1", Upstream: wsURL(up.srv), Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer r.Close()
	c := joinRaw(t, wsURL(srv), thruwayHello)
	stuck := dialRaw(t, wsURL(srv), nil)
	stuck.send(thruwayHello) // and never reads
	waitUntil(t, "two sessions upstream", func() bool { return len(up.received()) == 2 })

	start := time.Now()
	r.Close()
	if took := time.Since(start); took > flushTimeout+time.Second {
		t.Errorf("Close took %v", took)
	}
	if bye := c.expect(6); fmt.Sprint(bye[2]) != string("wamp.close.system_shutdown") {
		t.Errorf("the client got %v, want GOODBYE wamp.close.system_shutdown", bye)
	}
	c.expectClosed(5 * time.Second)
	waitUntil(t, "GOODBYE upstream from both", func() bool {
		n := 0
		for _, f := range up.received() {
			if strings.HasPrefix(f.data, `[6,`) {
				n++
			}
		}
		return n == 2
	})
}

func (f frame) String() string { return fmt.Sprintf("%d:%q", f.typ, f.data) }

// TestMessagesThatArriveTogetherLeaveTheRelayTogether: 50 RESULTs the
// upstream writes in one system call reach the client in order, in one
// write of the relay's; one message alone still goes out at once.
func TestMessagesThatArriveTogetherLeaveTheRelayTogether(t *testing.T) {
	var burst []byte
	for id := 1; id <= 50; id++ {
		payload := fmt.Sprintf(`[50,%d,{},[%d]]`, id, id)
		burst = append(append(burst, 0x81, byte(len(payload))), payload...) // a server's text frame, unmasked
	}
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, `[48,1,`) {
			return []string{"burst"} // the test writes it below, in one write
		}
		return welcomeAnswers(f)
	})
	srv, ln := startCountingRouter(t, Config{Upstream: wsURL(up.srv)})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	upConn := <-up.conns
	clientConn := ln.conn(t, 0)

	before := clientConn.writes.Load()
	if _, err := upConn.NetConn().Write(burst); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 50; id++ {
		if res := c.expect(50); fmt.Sprint(res[1]) != fmt.Sprint(id) {
			t.Fatalf("result %d: got %v", id, res)
		}
	}
	if n := clientConn.writes.Load() - before; n != 1 {
		t.Errorf("50 results that arrived together took %d writes, want 1", n)
	}
	c.send(`[48,2,{},"relay.one",[]]`)
	if res := c.expect(50); fmt.Sprint(res[1]) != "2" {
		t.Fatalf("got %v", res)
	}
}

// TestASilentOrOversizedUpstreamEndsTheRelay: an upstream that answers no
// ping for twice the keep-alive interval is lost (close 1011, counted);
// one that sends a message over the size limit gets its client closed
// with 1009, counted as too large.
func TestASilentOrOversizedUpstreamEndsTheRelay(t *testing.T) {
	big := `[50,1,{},["` + strings.Repeat("x", 2<<10) + `"]]`
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		switch {
		case strings.HasPrefix(f.data, `[48,1,{},"silent"`):
			return []string{stall}
		case strings.HasPrefix(f.data, `[48,1,{},"big"`):
			return []string{big}
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add, KeepAlive: 200 * time.Millisecond, MaxMessageSize: 1 << 10})
	closedWith := func(c *rawClient) *websocket.CloseError {
		t.Helper()
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, _, err := c.conn.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce
			}
			if err != nil {
				t.Fatalf("the client's connection ended with %v, want a close frame", err)
			}
		}
	}

	silent := joinRaw(t, wsURL(srv), thruwayHello)
	silent.send(`[48,1,{},"silent",[]]`)
	// The client answers the relay's pings (gorilla does, while reading).
	if ce := closedWith(silent); ce.Code != closeUpstreamLost || !strings.Contains(ce.Text, "not responding") {
		t.Errorf("closed with %d %q, want %d naming an upstream not responding", ce.Code, ce.Text, closeUpstreamLost)
	}
	if n := rej.get(RejectUpstreamLost); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectUpstreamLost)
	}
	if n := rej.get(RejectKeepAlive); n != 0 {
		t.Errorf("%d %s counted: the client was not silent", n, RejectKeepAlive)
	}

	oversized := joinRaw(t, wsURL(srv), thruwayHello)
	oversized.send(`[48,1,{},"big",[]]`)
	if ce := closedWith(oversized); ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("closed with %d %q, want %d", ce.Code, ce.Text, websocket.CloseMessageTooBig)
	}
	if n := rej.get(RejectTooLarge); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectTooLarge)
	}
}

// TestABusyRelayIsNotTakenForASilentOne: a client that calls all the time
// keeps its relay for many keep-alive intervals, and so does its upstream,
// which answers all the time: a side is silent only when it sends nothing.
func TestABusyRelayIsNotTakenForASilentOne(t *testing.T) {
	const keepAlive = 100 * time.Millisecond
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, welcomeAnswers)
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add, KeepAlive: keepAlive})
	c := joinRaw(t, wsURL(srv), thruwayHello)
	start := time.Now()
	for id := 1; time.Since(start) < 10*keepAlive && id <= 100_000; id++ {
		c.send(fmt.Sprintf(`[48,%d,{},"relay.busy",[]]`, id))
		if res := c.expect(50); fmt.Sprint(res[1]) != fmt.Sprint(id) {
			t.Fatalf("call %d got %v", id, res)
		}
	}
	for _, reason := range RejectReasons() {
		if n := rej.get(reason); n != 0 {
			t.Errorf("%d %s counted", n, reason)
		}
	}
}

// TestAnUpstreamThatChoosesAnotherSubprotocolIsRefused: gorilla takes
// whatever subprotocol the server answers; one the client did not offer is
// one the relay cannot read: the client gets HTTP 502, counted, and the
// router goes on.
func TestAnUpstreamThatChoosesAnotherSubprotocolIsRefused(t *testing.T) {
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, http.Header{"Sec-Websocket-Protocol": {"wamp.2.ubjson"}})
		if err == nil {
			conn.Close()
		}
	}))
	defer odd.Close()
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(odd), Config{Rejected: rej.add})
	_, rsp, err := wampraw.Dial(context.Background(), wsURL(srv), wampraw.Options{Timeout: 5 * time.Second})
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusBadGateway {
		t.Fatalf("handshake: %v, response %v; want HTTP 502", err, rsp)
	}
	if n := rej.get(RejectUpstreamUnavailable); n != 1 {
		t.Errorf("%d %s counted, want 1", n, RejectUpstreamUnavailable)
	}
}

// TestAnUpstreamRefusalReachesTheClient: an upstream that refuses the
// relay's handshake with a 4xx (for the client's credentials, say) is not
// down: the client gets its status, counted apart.
func TestAnUpstreamRefusalReachesTheClient(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no cookie, no entry", http.StatusForbidden)
	}))
	defer refusing.Close()
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(refusing), Config{Rejected: rej.add})
	_, rsp, err := wampraw.Dial(context.Background(), wsURL(srv), wampraw.Options{Timeout: 5 * time.Second})
	if err == nil || rsp == nil || rsp.StatusCode != http.StatusForbidden {
		t.Fatalf("handshake: %v, response %v; want the upstream's HTTP 403", err, rsp)
	}
	if a, b := rej.get(RejectUpstreamRefused), rej.get(RejectUpstreamUnavailable); a != 1 || b != 0 {
		t.Errorf("%d %s and %d %s counted, want 1 and 0", a, RejectUpstreamRefused, b, RejectUpstreamUnavailable)
	}
}

// TestShutdownIsQuickWithPeersThatDoNotRead: over wss://, an upstream that
// stops reading under a flood from its client, and a client that stops
// reading under a flood from the upstream, each with a write of the relay
// stuck on it: Close still returns within the flush deadline.
func TestShutdownIsQuickWithPeersThatDoNotRead(t *testing.T) {
	payload := strings.Repeat("x", 60<<10)
	up := startUpstreamPeerTLS(t, func(f frame) []string {
		switch {
		case strings.HasPrefix(f.data, `[48,1,{},"stall"`):
			return []string{stall}
		case strings.HasPrefix(f.data, `[48,1,{},"flood"`):
			flood := make([]string, 400) // 24 MiB
			for i := range flood {
				flood[i] = `[50,1,{"progress":true},["` + payload + `"]]`
			}
			return flood
		}
		return welcomeAnswers(f)
	})
	// A queue for the client large enough to hold the flood: the
	// client's writer stays stuck in a write, not dropped at the bound.
	r, err := New(Config{Realm: "realm1", Upstream: wsURL(up.srv), UpstreamTLS: &tls.Config{RootCAs: up.roots},
		OutQueueBytes: 64 << 20, Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer r.Close()

	// The upstream stops reading; its client sends until the relay's
	// write to it is stuck (the client's own writes then stall too).
	flooding := joinRaw(t, wsURL(srv), thruwayHello)
	flooding.send(`[48,1,{},"stall",[]]`)
	go func() {
		for id := 2; id < 1000; id++ {
			flooding.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if flooding.conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"x",["%s"]]`, id, payload)) != nil {
				return
			}
		}
	}()
	// The upstream floods a client that reads nothing after WELCOME.
	reading := dialRaw(t, wsURL(srv), nil)
	reading.send(thruwayHello)
	reading.expect(2)
	reading.send(`[48,1,{},"flood",[]]`)
	// Seen stuck on five polls in a row: not a write that happens to be
	// in progress.
	seen := 0
	waitUntil(t, "both relays stuck in a write", func() bool {
		if stuckWrites(r) == 2 {
			seen++
		} else {
			seen = 0
		}
		time.Sleep(20 * time.Millisecond) // between the polls
		return seen >= 5
	})

	start := time.Now()
	r.Close()
	if took := time.Since(start); took > flushTimeout+time.Second {
		t.Errorf("Close took %v, want at most the %v flush and a second", took, flushTimeout)
	}
}

// stuckWrites counts the relays with bytes waiting for the client's socket
// or a write to the upstream's in progress.
func stuckWrites(r *Router) int {
	r.relaysMu.Lock()
	defer r.relaysMu.Unlock()
	n := 0
	for rl := range r.relays {
		// What the client's socket did not take waits for the writer; a
		// write to the upstream holds the relayConn's lock.
		if pending, _ := rl.clientNet.pending(); pending > 0 {
			n++
		} else if !rl.upstreamNet.mu.TryLock() {
			n++
		} else {
			rl.upstreamNet.mu.Unlock()
		}
	}
	return n
}

// TestAnEndingRelayGivesBackItsCallsAtOnce: the calls in flight a relayed
// session holds against the bound over all sessions are given back as
// soon as its client leaves, not once its upstream has answered the close
// (here never, so the relay ends only at the flush deadline): another
// client's call goes through while the first relay is still ending.
func TestAnEndingRelayGivesBackItsCallsAtOnce(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		switch {
		case strings.Contains(f.data, `"hold.last"`):
			return []string{stall} // reads nothing more: no answer to the close
		case strings.Contains(f.data, `"hold"`):
			return nil
		}
		return welcomeAnswers(f)
	})
	r, err := New(Config{Realm: "realm1", Upstream: wsURL(up.srv), MaxCallsInFlightTotal: 2, Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	defer r.Close()

	holder := joinRaw(t, wsURL(srv), thruwayHello)
	holder.send(`[48,1,{},"hold",[]]`)
	holder.send(`[48,2,{},"hold.last",[]]`)
	waitUntil(t, "both calls upstream", func() bool { return len(up.received()) == 3 })
	holder.conn.Close()

	c := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; ; id++ {
		c.send(fmt.Sprintf(`[48,%d,{},"echo",[]]`, id))
		m := c.recv()
		if fmt.Sprint(m[0]) == "50" {
			break
		}
		if fmt.Sprint(m[0]) != "8" || id == 1000 {
			t.Fatalf("got %v, want a RESULT", m)
		}
	}
	r.relaysMu.Lock()
	relays := len(r.relays)
	r.relaysMu.Unlock()
	if relays != 2 {
		t.Errorf("the call went through with %d relays open, want 2: the holder's was to be ending still", relays)
	}
}

// TestACalleeFarBehindIsRefusedInvocationsNotDropped: INVOCATIONs for a
// callee that has half the front's bound in bytes waiting are answered for
// it with ERROR wamp.error.network_failure to the upstream, as the
// embedded router answers nexus; the callee stays connected.
func TestACalleeFarBehindIsRefusedInvocationsNotDropped(t *testing.T) {
	payload := strings.Repeat("x", 64<<10)
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		if strings.HasPrefix(f.data, `[64,`) {
			flood := []string{`[65,1,7]`}
			for i := range 400 { // 25 MiB
				flood = append(flood, `[68,`+fmt.Sprint(i+1)+`,7,{},["`+payload+`"]]`)
			}
			return flood
		}
		return welcomeAnswers(f)
	})
	rej := &rejections{n: map[string]int{}}
	srv := startRelay(t, wsURL(up.srv), Config{Rejected: rej.add, WriteTimeout: time.Hour})
	callee := joinRaw(t, wsURL(srv), thruwayHello)
	callee.send(`[64,1,{},"slow.callee"]`) // and it reads nothing more
	refusals := func() int {
		n := 0
		for _, f := range up.received() {
			if strings.HasPrefix(f.data, `[8,68,`) && strings.Contains(f.data, `"wamp.error.network_failure"`) {
				n++
			}
		}
		return n
	}
	// Each refusal is counted before its ERROR reaches the upstream: the
	// two agree once the flood is through.
	waitUntil(t, "most INVOCATIONs refused to the upstream, each counted", func() bool {
		n := refusals()
		return n > 200 && rej.get(RejectCalleeBlocked) == n
	})
	if n := rej.get(RejectSlowConsumer); n != 0 {
		t.Errorf("the callee was dropped as a slow consumer (%d)", n)
	}
}

// TestNothingIsObservedAfterARelayHasEnded: once a relay has decided to
// end (here the router shuts down: GOODBYE and the close frame to the
// client), an answer the upstream sends after is neither delivered nor
// observed: a RESULT counts exactly when its caller receives it. (It used
// to reach the client after the GOODBYE, uncounted.)
func TestNothingIsObservedAfterARelayHasEnded(t *testing.T) {
	up := startUpstreamPeer(t, []string{"wamp.2.json"}, func(f frame) []string {
		switch {
		case strings.HasPrefix(f.data, "[48,"):
			return nil // answered only after the router's GOODBYE
		case strings.HasPrefix(f.data, "[6,"):
			return []string{`[50,7,{},["too late"]]`}
		}
		return welcomeAnswers(f)
	})
	rec := newRecorder()
	r, err := New(Config{Realm: "realm1", Upstream: wsURL(up.srv), OpenSession: rec.open(), Logger: testkit.QuietLog()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	c := joinRaw(t, wsURL(srv), thruwayHello)
	c.send(`[48,7,{},"relay.late",[]]`)
	rec.waitFor(t, "call 7 relay.late 0s")
	waitUntil(t, "the CALL upstream", func() bool { return len(up.received()) == 2 })
	r.Close()

	var results int
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			break
		}
		if strings.HasPrefix(string(b), "[50,7,") {
			results++
		}
	}
	if got := rec.snapshot(); slices.Contains(got, "result 7") != (results == 1) {
		t.Errorf("observed %q, and the client received %d RESULTs: a RESULT is observed exactly when received", got, results)
	}
}
