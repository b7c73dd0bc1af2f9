package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recorder is a CallSession that writes down what the observer reported.
type recorder struct {
	mu     *sync.Mutex
	events *[]string
}

func (r recorder) add(format string, args ...any) {
	r.mu.Lock()
	*r.events = append(*r.events, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r recorder) Call(id uint64, procedure string, timeout time.Duration) {
	r.add("call %d %s %v", id, procedure, timeout)
}
func (r recorder) Result(id uint64)              { r.add("result %d", id) }
func (r recorder) Error(id uint64, uri string)   { r.add("error %d %s", id, uri) }
func (r recorder) Interrupt(id uint64)           { r.add("interrupt %d", id) }
func (r recorder) Registered(procedure string)   { r.add("registered %s", procedure) }
func (r recorder) Unregistered(procedure string) { r.add("unregistered %s", procedure) }
func (r recorder) Close()                        { r.add("close") }
func (r recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(*r.events)
}
func newRecorder() recorder { return recorder{mu: &sync.Mutex{}, events: &[]string{}} }
func (r recorder) open() OpenSessionFunc {
	return func(string) SessionObservers { r.add("open"); return SessionObservers{Calls: r} }
}
func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") + "/" }
func (r recorder) waitFor(t *testing.T, want string) {
	t.Helper()
	waitUntil(t, want, func() bool { return slices.Contains(r.snapshot(), want) })
}

// waitUntil is testkit.Eventually for a condition with nothing to show.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, what, func() (any, bool) { return nil, cond() })
}

func startRouter(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.Realm == "" {
		cfg.Realm = "realm1"
	}
	if cfg.Logger == nil {
		cfg.Logger = testkit.QuietLog()
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(func() { r.Close(); srv.Close() })
	return srv
}

// rawClient speaks WAMP JSON over a bare WebSocket, frame by frame, the way
// a client library we did not write would; it fails the test on an error.
type rawClient struct {
	t    *testing.T
	conn *wampraw.Conn
}

func dialRaw(t *testing.T, url string, header http.Header, protocol ...string) *rawClient {
	t.Helper()
	o := wampraw.Options{Header: header, Timeout: 5 * time.Second}
	if len(protocol) > 0 {
		o.Protocol = protocol[0]
	}
	conn, rsp, err := wampraw.Dial(context.Background(), url, o)
	if err != nil {
		status := 0
		if rsp != nil {
			status = rsp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn}
}

func (c *rawClient) send(frame string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("send %s: %v", frame, err)
	}
}

// recv reads the next message as a JSON array.
func (c *rawClient) recv() []any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	var msg []any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&msg); err != nil || len(msg) == 0 {
		c.t.Fatalf("recv: not a WAMP message: %s", b)
	}
	return msg
}

// expect reads the next message and checks its type code.
func (c *rawClient) expect(code int) []any {
	c.t.Helper()
	msg := c.recv()
	if got := fmt.Sprint(msg[0]); got != fmt.Sprint(code) {
		c.t.Fatalf("got message %v, want type %d", msg, code)
	}
	return msg
}

// thruwayHello is the HELLO Thruway sends: every role, authmethods empty,
// authid anonymous.
const thruwayHello = `[1,"realm1",{"roles":{"publisher":{"features":{"subscriber_blackwhite_listing":true,"publisher_exclusion":true}},` +
	`"subscriber":{"features":{}},"caller":{"features":{"caller_identification":true,"progressive_call_results":true,"call_canceling":true}},` +
	`"callee":{"features":{"caller_identification":true,"pattern_based_registration":true,"shared_registration":true,"progressive_call_results":true,"registration_revocation":true}}},` +
	`"authmethods":[],"authid":"anonymous"}]`

// thruwayHeader is what Thruway's WebSocket library sends: an Origin with
// the host but not the port.
func thruwayHeader() http.Header { return http.Header{"Origin": {"http://127.0.0.1"}} }

func TestThruwayStyleClientsCallThroughTheRouter(t *testing.T) {
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open()})

	callee := dialRaw(t, wsURL(srv), thruwayHeader())
	callee.send(thruwayHello)
	callee.expect(2) // WELCOME
	callee.send(`[64,6287348219427712,{},"com.example.add"]`)
	callee.expect(65) // REGISTERED
	rec.waitFor(t, "registered com.example.add")

	caller := dialRaw(t, wsURL(srv), thruwayHeader())
	caller.send(thruwayHello)
	caller.expect(2)
	// A random 53-bit request id, as Thruway uses.
	const id = 9007199254740991
	caller.send(fmt.Sprintf(`[48,%d,{},"com.example.add",[2,3]]`, id))
	inv := callee.expect(68) // INVOCATION
	callee.send(fmt.Sprintf(`[70,%v,{},[5]]`, inv[1]))
	res := caller.expect(50) // RESULT
	if fmt.Sprint(res[1]) != fmt.Sprint(id) {
		t.Fatalf("RESULT for request %v, want %d", res[1], id)
	}
	rec.waitFor(t, fmt.Sprintf("result %d", id))

	// CANCEL without a mode, as Thruway sends it.
	caller.send(`[48,4503599627370496,{},"com.example.add",[1,1]]`)
	callee.expect(68)
	caller.send(`[49,4503599627370496,{}]`)
	errMsg := caller.expect(8)
	if errMsg[4] != "wamp.error.canceled" {
		t.Fatalf("cancel answered with %v", errMsg)
	}
	rec.waitFor(t, "error 4503599627370496 wamp.error.canceled")

	// Thruway leaves without GOODBYE: the session ends all the same.
	caller.conn.Close()
	waitUntil(t, "the caller's session to close", func() bool {
		return countOf(rec.snapshot(), "close") == 1
	})
}

func countOf(events []string, want string) int {
	n := 0
	for _, e := range events {
		if e == want {
			n++
		}
	}
	return n
}

func TestRouterGoodbyeAnsweredWithGoodbyeAndOut(t *testing.T) {
	rec := newRecorder()
	cfg := Config{Realm: "realm1", OpenSession: rec.open(), Logger: testkit.QuietLog()}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	c := dialRaw(t, wsURL(srv), thruwayHeader())
	c.send(thruwayHello)
	c.expect(2)
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	c.expect(6) // GOODBYE from the router on shutdown
	// Thruway answers with an error URI rather than wamp.close.goodbye_and_out.
	c.send(`[6,{},"wamp.error.goodbye_and_out"]`)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("router did not close after the client's GOODBYE")
	}
	rec.waitFor(t, "close")
}

func TestClientGoodbyeEndsTheSession(t *testing.T) {
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open()})
	c := dialRaw(t, wsURL(srv), nil)
	c.send(thruwayHello)
	c.expect(2)
	c.send(`[48,1,{},"nobody.registered"]`)
	c.expect(8)
	c.send(`[6,{},"wamp.close.close_realm"]`)
	c.expect(6) // GOODBYE echoed
	rec.waitFor(t, "close")
	want := []string{"open", "call 1 nobody.registered 0s", "error 1 wamp.error.no_such_procedure", "close"}
	if got := rec.snapshot(); !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
}

func TestObserverSeesCallOptionsProgressAndRegistrations(t *testing.T) {
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open()})
	callee := dialRaw(t, wsURL(srv), nil)
	callee.send(thruwayHello)
	callee.expect(2)
	callee.send(`[64,1,{"match":"prefix"},"com.prefix"]`)
	callee.expect(65)
	callee.send(`[64,2,{},"com.progress"]`)
	callee.expect(65)
	callee.send(`[64,3,{},"com.progress"]`) // already registered: refused
	callee.expect(8)

	caller := dialRaw(t, wsURL(srv), nil)
	caller.send(thruwayHello)
	caller.expect(2)
	caller.send(`[48,7,{"receive_progress":true,"timeout":1500},"com.progress"]`)
	inv := callee.expect(68)
	callee.send(fmt.Sprintf(`[70,%v,{"progress":true},["partial"]]`, inv[1]))
	if res := caller.expect(50); fmt.Sprint(res[2]) != "map[progress:true]" {
		t.Fatalf("first RESULT %v is not progressive", res)
	}
	callee.send(fmt.Sprintf(`[70,%v,{},["final"]]`, inv[1]))
	caller.expect(50)
	rec.waitFor(t, "result 7")

	got := rec.snapshot()
	want := []string{"open", "registered com.progress", "open", "call 7 com.progress 1.5s", "result 7"}
	if !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
}

// A registration ends with UNREGISTERED (or the session): the observer
// reports it, for the procedure REGISTERED named, once.
func TestObserverSeesUnregistrations(t *testing.T) {
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open()})
	callee := dialRaw(t, wsURL(srv), nil)
	callee.send(thruwayHello)
	callee.expect(2)
	callee.send(`[64,1,{},"com.a"]`)
	reg := callee.expect(65)
	callee.send(`[66,2,999]`) // no such registration
	callee.expect(8)
	callee.send(fmt.Sprintf(`[66,3,%v]`, reg[2]))
	callee.expect(67)
	callee.send(fmt.Sprintf(`[66,4,%v]`, reg[2])) // twice
	callee.expect(8)
	rec.waitFor(t, "unregistered com.a")

	got := rec.snapshot()
	want := []string{"open", "registered com.a", "unregistered com.a"}
	if !slices.Equal(got, want) {
		t.Errorf("observed %q, want %q", got, want)
	}
}

func TestOriginPolicy(t *testing.T) {
	srv := startRouter(t, Config{AllowOrigins: []string{"*.example.com:*", "app.test"}})
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://127.0.0.1", http.StatusSwitchingProtocols}, // Thruway: no port
		{"http://" + host, http.StatusSwitchingProtocols},
		{"http://127.0.0.1:3000", http.StatusSwitchingProtocols}, // same host, other port
		{"https://dash.example.com:8443", http.StatusSwitchingProtocols},
		{"https://APP.test", http.StatusSwitchingProtocols},
		{"https://app.test:444", http.StatusForbidden}, // pattern has no port
		{"http://evil.example.org", http.StatusForbidden},
		{"http://example.com.evil.org", http.StatusForbidden},
		{"null", http.StatusForbidden},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			d := websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", tc.origin)
			}
			conn, rsp, err := d.Dial(wsURL(srv), h)
			if conn != nil {
				conn.Close()
			}
			if rsp == nil {
				t.Fatalf("no response: %v", err)
			}
			if rsp.StatusCode != tc.want {
				t.Errorf("HTTP %d, want %d", rsp.StatusCode, tc.want)
			}
		})
	}
}

func TestOriginPatternMustBeValid(t *testing.T) {
	if _, err := New(Config{Realm: "realm1", AllowOrigins: []string{"[a-"}, Logger: testkit.QuietLog()}); err == nil {
		t.Fatal("a malformed origin pattern was accepted")
	}
}

func TestUnknownSubprotocolIsRefused(t *testing.T) {
	srv := startRouter(t, Config{})
	d := websocket.Dialer{Subprotocols: []string{"wamp.2.xml", "mqtt"}}
	conn, rsp, err := d.Dial(wsURL(srv), nil)
	if conn != nil {
		conn.Close()
		t.Fatal("upgraded without a WAMP subprotocol")
	}
	if rsp == nil || rsp.StatusCode != http.StatusBadRequest {
		t.Fatalf("want HTTP 400, got %v (%v)", rsp, err)
	}
}

func TestAnyPathUpgrades(t *testing.T) {
	srv := startRouter(t, Config{})
	c := dialRaw(t, wsURL(srv)+"some/app/path", nil)
	c.send(thruwayHello)
	c.expect(2)
}
