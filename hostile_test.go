package observer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gorilla/websocket"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// logLine builds the line WampObserver sends.
func logLine(protocol, direction, msg string) string {
	b, _ := json.Marshal([]string{protocol, direction, msg})
	return string(b)
}

func (s scrapeResult) counter(name, label, value string) float64 {
	for _, m := range s[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// hostileInput is a family of bad inputs and the reason each must be
// counted under.
type hostileInput struct {
	reason string
	line   func(i int) []byte
}

// udpHostile are bad datagrams, by expected reason.
func udpHostile() []hostileInput {
	wamp := func(msg string) func(int) []byte {
		return func(i int) []byte { return []byte(logLine("wamp", "out", fmt.Sprintf(msg, i))) }
	}
	return []hostileInput{
		{wamplog.ReasonEmpty, func(int) []byte { return nil }},
		{wamplog.ReasonEmpty, func(int) []byte { return []byte("\n\n") }},
		{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, "GET / HTTP/1.1 %d", i) }},
		{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, `["wamp","out"]%d`, i) }},
		{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, `{"wamp":%d}`, i) }},
		{wamplog.ReasonNotJSON, func(i int) []byte { return []byte(strings.Repeat("x", 65000)) }}, // 64 KiB datagrams
		{wamplog.ReasonBadName, func(i int) []byte { return []byte(logLine("WAMP", "out", `[48,1,{},"p"]`)) }},
		{wamplog.ReasonBadName, func(i int) []byte { return []byte(logLine("wamp", fmt.Sprintf("out_%d", i), `[48,1,{},"p"]`)) }},
		{wamplog.ReasonBadName, func(i int) []byte { return []byte(logLine(strings.Repeat("a", 40), "out", `[48,1,{},"p"]`)) }},
		{wamplog.ReasonBadMessage, wamp(`{"type":%d}`)},
		{wamplog.ReasonBadMessage, wamp(`[%d`)},
		{wamplog.ReasonWrongArity, wamp(`[48,%d,{}]`)},
		{wamplog.ReasonWrongType, wamp(`[48,%d,[],"p"]`)},
		{wamplog.ReasonWrongType, wamp(`[48,%d,{},{"procedure":"p"}]`)},
		{wamplog.ReasonBadID, wamp(`[48,%d.5,{},"p"]`)},
		{wamplog.ReasonBadID, wamp(`[48,-%d,{},"p"]`)},
		{wamplog.ReasonBadID, wamp(`[48,{"id":%d},{},"p"]`)},
		{wamplog.ReasonBadID, wamp(`[50,"%d",{}]`)},
		{wamplog.ReasonUnknownType, wamp(`[1%d99,1,{}]`)},
		{wamplog.ReasonInvalidUTF8, func(i int) []byte {
			return fmt.Appendf(nil, "[\"wamp\",\"out\",\"[48,%d,{},\\\"p\xff\xfe\\\"]\"]", i)
		}},
	}
}

// TestHostileInputLeavesValidCountsExact throws more than 10,000 bad inputs
// at a running router and log listener over UDP, TCP and WebSocket, while
// valid calls and log lines flow, and checks that the router stays up,
// every rejection is counted by reason, the valid counts are exact, and
// memory stays bounded.
func TestHostileInputLeavesValidCountsExact(t *testing.T) {
	if testing.Short() {
		t.Skip("sends over 10,000 inputs")
	}
	in, logAddr := startInstanceWithLog(t, app.Config{
		CallTimeout: 2 * time.Second, MaxMessageSize: 64 << 10, MaxLogConns: 50, MaxLogLineLen: 64 << 10,
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	callee := in.connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"hi"}}
	}, nil); err != nil {
		t.Fatal(err)
	}

	// Valid traffic, all along.
	const validCalls, validLogPairs = 300, 300
	var valid sync.WaitGroup
	caller := in.connect(t, serialize.MSGPACK)
	valid.Go(func() {
		for range validCalls {
			if _, err := caller.Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
				t.Errorf("valid call: %v", err)
			}
		}
	})
	validUDP := dialT(t, "udp", logAddr)
	validTCP := dialT(t, "tcp", logAddr)
	valid.Go(func() {
		for i := 1; i <= validLogPairs; i++ {
			call, result := logLine("wamp", "out", fmt.Sprintf(`[48,%d,{},"hello1"]`, i)), logLine("wamp", "out", fmt.Sprintf(`[50,%d,{}]`, i))
			if _, err := validUDP.Write([]byte(call + "\n" + result + "\n")); err != nil {
				t.Errorf("valid datagram: %v", err)
			}
			if _, err := fmt.Fprintf(validTCP, "%s\n%s\n", call, result); err != nil {
				t.Errorf("valid TCP lines: %v", err)
			}
			time.Sleep(time.Millisecond) // spread over the blast
		}
	})

	inputs, want := 0, map[string]float64{}
	// UDP: every family of bad datagram, paced so that the socket buffer
	// never overflows (kernel drops are not what this test is about).
	bad := dialT(t, "udp", logAddr)
	const perFamily = 350
	sent, unsynced := 0, 0
	for _, h := range udpHostile() {
		for i := range perFamily {
			datagram := h.line(i)
			if _, err := bad.Write(datagram); err != nil {
				t.Fatal(err)
			}
			want[h.reason]++
			inputs++
			sent++
			if unsynced += len(datagram) + 64; unsynced > 128<<10 || sent%100 == 0 {
				waitForCond(t, 10*time.Second, "the listener to catch up", func() bool {
					return scrapeResult(in.scrape(t, "/metrics")).badLines() >= float64(sent)
				})
				unsynced = 0
			}
		}
	}

	// TCP: bad lines on one connection, a line that never ends, a slow
	// writer, and more idle connections than allowed.
	tcpBad := dialT(t, "tcp", logAddr)
	for i := range 1000 {
		fmt.Fprintf(tcpBad, "not a line %d\n", i)
		want[wamplog.ReasonNotJSON]++
		inputs++
	}
	fmt.Fprintf(tcpBad, "%s", strings.Repeat("y", 1<<20)) // 1 MiB, no newline yet
	fmt.Fprintf(tcpBad, "\n%s\n", logLine("wamp", "out", `[48,1000001,{},"hello2"]`))
	want[wamplog.ReasonTooLong]++
	inputs++
	slow := dialT(t, "tcp", logAddr)
	pair := logLine("wamp", "out", `[48,2000001,{},"hello2"]`) + "\n" + logLine("wamp", "out", `[50,2000001,{}]`) + "\n"
	for i := 0; i < len(pair); i += 7 {
		slow.Write([]byte(pair[i:min(i+7, len(pair))]))
		time.Sleep(200 * time.Microsecond)
	}
	var idle []net.Conn
	for range 80 { // 50 allowed, 3 already open: 33 refused
		c, err := net.Dial("tcp", logAddr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		inputs++
	}
	waitForCond(t, 10*time.Second, "idle connections refused", func() bool {
		s := scrapeResult(in.scrape(t, "/metrics"))
		return s.gauge("wamp_observer_log_tcp_connections") == 50 && s.plainCounter("wamp_observer_log_tcp_refused_total") == 33
	})
	for _, c := range idle {
		c.Close()
	}

	// WebSocket: no WAMP subprotocol, a browser Origin from elsewhere,
	// oversized frames, undecodable JSON and msgpack, messages before
	// HELLO, answers for invocations never made.
	wantWS := map[string]float64{}
	for range 300 {
		c, _, _ := (&websocket.Dialer{Subprotocols: []string{"wamp.2.xml"}}).Dial(in.wampURL, nil)
		if c != nil {
			t.Fatal("upgraded without a WAMP subprotocol")
		}
		wantWS[router.RejectSubprotocol]++
		inputs++
	}
	for range 100 {
		c, _, _ := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(in.wampURL, http.Header{"Origin": {"https://evil.example"}})
		if c != nil {
			t.Fatal("upgraded a foreign Origin")
		}
		wantWS[router.RejectOrigin]++
		inputs++
	}
	for range 50 {
		c := joinRaw(t, in.wampURL, "wamp.2.json")
		c.WriteMessage(websocket.TextMessage, []byte(`[48,1,{},"hello1",["`+strings.Repeat("z", 100<<10)+`"]]`))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break // closed by the router
			}
		}
		wantWS[router.RejectTooLarge]++
		inputs++
	}
	junk := joinRaw(t, in.wampURL, "wamp.2.json")
	for i := range 1000 {
		junk.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"hello1"`, i))
		wantWS[router.RejectUndecodable]++
		inputs++
		// Answers for invocations this session never received.
		junk.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[70,%d,{},["forged"]]`, i+1))
		inputs++
	}
	mp := joinRaw(t, in.wampURL, "wamp.2.msgpack")
	for range 300 {
		mp.WriteMessage(websocket.BinaryMessage, []byte{0xc1, 0xc1, 0xc1})
		wantWS[router.RejectUndecodable]++
		inputs++
	}
	for range 100 {
		c, _, err := (&websocket.Dialer{Subprotocols: []string{"wamp.2.json"}}).Dial(in.wampURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.WriteMessage(websocket.TextMessage, []byte(`[48,1,{},"hello1"]`)) // before HELLO
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.ReadMessage() // ABORT
		c.Close()
		wantWS[router.RejectJoin]++
		inputs++
	}

	valid.Wait()
	t.Logf("%d hostile inputs", inputs)
	if inputs < 10_000 {
		t.Fatalf("only %d hostile inputs", inputs)
	}

	// The router still works, and every count is exact.
	if _, err := in.connect(t, serialize.CBOR).Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
		t.Fatalf("the router stopped answering: %v", err)
	}
	// Poll until the counts settle; whatever still differs is reported.
	var got scrapeResult
	var diffs []string
	for deadline := time.Now().Add(15 * time.Second); ; {
		got, diffs = in.scrape(t, "/metrics"), nil
		check := func(what string, got, want float64) {
			if got != want {
				diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", what, got, want))
			}
		}
		for reason, n := range want {
			check("bad lines "+reason, got.counter("wamp_observer_log_bad_lines_total", "reason", reason), n)
		}
		for reason, n := range wantWS {
			check("rejections "+reason, got.counter("wamp_observer_ws_rejections_total", "reason", reason), n)
		}
		check("router responses", float64(got.count("wamp_router_responses_seconds", "hello1")), validCalls+1)
		check("logged responses hello1", float64(got.count("wamp_out_responses_seconds", "hello1")), 2*validLogPairs)
		check("logged responses hello2", float64(got.count("wamp_out_responses_seconds", "hello2")), 1)
		if len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	if c := got.count("wamp_out_errors_seconds", "hello1") + got.count("wamp_out_timeouts_seconds", "hello1"); c != 0 {
		t.Errorf("valid log pairs ended otherwise: %d", c)
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
}

func (s scrapeResult) plainCounter(name string) float64 {
	if mf := s[name]; mf != nil && len(mf.GetMetric()) == 1 {
		return mf.GetMetric()[0].GetCounter().GetValue()
	}
	return -1
}

func (s scrapeResult) badLines() float64 {
	var n float64
	for _, m := range s["wamp_observer_log_bad_lines_total"].GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}

func dialT(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// joinRaw opens a bare WebSocket and joins realm1.
func joinRaw(t *testing.T, url, protocol string) *websocket.Conn {
	t.Helper()
	c, _, err := (&websocket.Dialer{Subprotocols: []string{protocol}}).Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	hello := []byte(`[1,"realm1",{"roles":{"caller":{},"callee":{}}}]`)
	kind := websocket.TextMessage
	if protocol == "wamp.2.msgpack" {
		// [1, "realm1", {"roles": {"caller": {}}}] in msgpack.
		hello = []byte{0x93, 0x01, 0xa6, 'r', 'e', 'a', 'l', 'm', '1', 0x81, 0xa5, 'r', 'o', 'l', 'e', 's', 0x81, 0xa6, 'c', 'a', 'l', 'l', 'e', 'r', 0x80}
		kind = websocket.BinaryMessage
	}
	if err := c.WriteMessage(kind, hello); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil { // WELCOME
		t.Fatalf("join: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return c
}
