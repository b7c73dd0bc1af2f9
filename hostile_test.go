package observer_test

import (
	"context"
	"fmt"
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

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
	"github.com/php-wamp-observer/php-wamp-observer/router"
	"github.com/php-wamp-observer/php-wamp-observer/wamplog"
)

// TestHostileInputLeavesValidCountsExact throws more than 10,000 bad inputs
// at a running router and log listener over UDP, TCP and WebSocket, while
// valid calls and log lines flow, and checks that the router stays up,
// every rejection is counted by reason, the valid counts are exact, and
// memory stays bounded. Its phases share one instance.
func TestHostileInputLeavesValidCountsExact(t *testing.T) {
	if testing.Short() {
		t.Skip("sends over 10,000 inputs")
	}
	in := harness.Start(t, harness.Config{
		Timeout: 2 * time.Second, MaxMessage: 64 << 10, Log: true, MaxLogConns: 50, MaxLogLine: 64 << 10,
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	callee := in.Connect(t, serialize.JSON)
	if err := callee.Register("hello1", func(context.Context, *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: wamp.List{"hi"}}
	}, nil); err != nil {
		t.Fatal(err)
	}

	// Valid traffic, all along.
	const validCalls, validLogPairs = 300, 300
	var valid sync.WaitGroup
	defer valid.Wait() // also when a phase fails
	caller := in.Connect(t, serialize.MSGPACK)
	valid.Go(func() {
		for range validCalls {
			if _, err := caller.Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
				t.Errorf("valid call: %v", err)
			}
		}
	})
	validUDP := harness.Dial(t, "udp", in.LogAddr)
	validTCP := harness.Dial(t, "tcp", in.LogAddr)
	valid.Go(func() {
		for i := 1; i <= validLogPairs; i++ {
			call, result := testkit.LogLine("wamp", "out", fmt.Sprintf(`[48,%d,{},"hello1"]`, i)), testkit.LogLine("wamp", "out", fmt.Sprintf(`[50,%d,{}]`, i))
			if _, err := validUDP.Write([]byte(call + "\n" + result + "\n")); err != nil {
				t.Errorf("valid datagram: %v", err)
			}
			if _, err := fmt.Fprintf(validTCP, "%s\n%s\n", call, result); err != nil {
				t.Errorf("valid TCP lines: %v", err)
			}
			time.Sleep(time.Millisecond) // spread over the blast
		}
	})

	inputs, want, wantWS := 0, map[string]float64{}, map[string]float64{}
	ok := t.Run("udp", func(t *testing.T) {
		// Bad datagrams, each family with the reason it must be counted under.
		wampMsg := func(msg string) func(int) []byte {
			return func(i int) []byte { return []byte(testkit.LogLine("wamp", "out", fmt.Sprintf(msg, i))) }
		}
		udpHostile := []struct {
			reason string
			line   func(i int) []byte
		}{
			{wamplog.ReasonEmpty, func(int) []byte { return nil }},
			{wamplog.ReasonEmpty, func(int) []byte { return []byte("\n\n") }},
			{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, "GET / HTTP/1.1 %d", i) }},
			{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, `["wamp","out"]%d`, i) }},
			{wamplog.ReasonNotJSON, func(i int) []byte { return fmt.Appendf(nil, `{"wamp":%d}`, i) }},
			{wamplog.ReasonNotJSON, func(i int) []byte { return []byte(strings.Repeat("x", 65000)) }}, // 64 KiB datagrams
			{wamplog.ReasonBadName, func(i int) []byte { return []byte(testkit.LogLine("WAMP", "out", `[48,1,{},"p"]`)) }},
			{wamplog.ReasonBadName, func(i int) []byte { return []byte(testkit.LogLine("wamp", fmt.Sprintf("out_%d", i), `[48,1,{},"p"]`)) }},
			{wamplog.ReasonBadName, func(i int) []byte { return []byte(testkit.LogLine(strings.Repeat("a", 40), "out", `[48,1,{},"p"]`)) }},
			{wamplog.ReasonBadMessage, wampMsg(`{"type":%d}`)},
			{wamplog.ReasonBadMessage, wampMsg(`[%d`)},
			{wamplog.ReasonWrongArity, wampMsg(`[48,%d,{}]`)},
			{wamplog.ReasonWrongType, wampMsg(`[48,%d,[],"p"]`)},
			{wamplog.ReasonWrongType, wampMsg(`[48,%d,{},{"procedure":"p"}]`)},
			{wamplog.ReasonBadID, wampMsg(`[48,%d.5,{},"p"]`)},
			{wamplog.ReasonBadID, wampMsg(`[48,-%d,{},"p"]`)},
			{wamplog.ReasonBadID, wampMsg(`[48,{"id":%d},{},"p"]`)},
			{wamplog.ReasonBadID, wampMsg(`[50,"%d",{}]`)},
			{wamplog.ReasonUnknownType, wampMsg(`[1%d99,1,{}]`)},
			{wamplog.ReasonInvalidUTF8, func(i int) []byte {
				return fmt.Appendf(nil, "[\"wamp\",\"out\",\"[48,%d,{},\\\"p\xff\xfe\\\"]\"]", i)
			}},
		}
		// Every family of bad datagram, paced so that the socket buffer
		// never overflows (kernel drops are not what this test is about).
		bad := harness.Dial(t, "udp", in.LogAddr)
		const perFamily = 350
		sent, unsynced := 0, 0
		for _, h := range udpHostile {
			for i := range perFamily {
				datagram := h.line(i)
				if _, err := bad.Write(datagram); err != nil {
					t.Fatal(err)
				}
				want[h.reason]++
				inputs++
				sent++
				if unsynced += len(datagram) + 64; unsynced > 128<<10 || sent%100 == 0 {
					testkit.Eventually(t, 10*time.Second, "the listener caught up", func() (any, bool) {
						n, _ := in.Scrape(t).CounterTotal("wamp_observer_log_bad_lines_total") // none yet: 0
						return fmt.Sprintf("%v bad lines of %d sent", n, sent), n >= float64(sent)
					})
					unsynced = 0
				}
			}
		}
	}) && t.Run("tcp", func(t *testing.T) {
		// Bad lines on one connection, a line that never ends, a slow
		// writer, and more idle connections than allowed.
		tcpBad := harness.Dial(t, "tcp", in.LogAddr)
		for i := range 1000 {
			fmt.Fprintf(tcpBad, "not a line %d\n", i)
			want[wamplog.ReasonNotJSON]++
			inputs++
		}
		fmt.Fprintf(tcpBad, "%s", strings.Repeat("y", 1<<20)) // 1 MiB, no newline yet
		fmt.Fprintf(tcpBad, "\n%s\n", testkit.LogLine("wamp", "out", `[48,1000001,{},"hello2"]`))
		want[wamplog.ReasonTooLong]++
		inputs++
		slow := harness.Dial(t, "tcp", in.LogAddr)
		pair := testkit.LogLine("wamp", "out", `[48,2000001,{},"hello2"]`) + "\n" + testkit.LogLine("wamp", "out", `[50,2000001,{}]`) + "\n"
		for i := 0; i < len(pair); i += 7 {
			slow.Write([]byte(pair[i:min(i+7, len(pair))]))
			time.Sleep(200 * time.Microsecond)
		}
		for range 80 { // 50 allowed, 3 already open: 33 refused
			harness.Dial(t, "tcp", in.LogAddr) // closed at the end of the phase
			inputs++
		}
		testkit.Eventually(t, 10*time.Second, "idle connections refused", func() (any, bool) {
			s := in.Scrape(t)
			open, ok1 := s.Gauge("wamp_observer_log_tcp_connections")
			refused, ok2 := s.Counter("wamp_observer_log_tcp_refused_total")
			return fmt.Sprintf("%v open, %v refused", open, refused), ok1 && ok2 && open == 50 && refused == 33
		})
	}) && t.Run("websocket", func(t *testing.T) {
		// No WAMP subprotocol, a browser Origin from elsewhere, oversized
		// frames, undecodable JSON and msgpack, messages before HELLO,
		// answers for invocations never made.
		ctx := context.Background()
		for range 300 {
			if c, _, _ := wampraw.Dial(ctx, in.WAMPURL, wampraw.Options{Protocol: "wamp.2.xml"}); c != nil {
				t.Fatal("upgraded without a WAMP subprotocol")
			}
			wantWS[router.RejectSubprotocol]++
			inputs++
		}
		for range 100 {
			if c, _, _ := wampraw.Dial(ctx, in.WAMPURL, wampraw.Options{Header: http.Header{"Origin": {"https://evil.example"}}}); c != nil {
				t.Fatal("upgraded a foreign Origin")
			}
			wantWS[router.RejectOrigin]++
			inputs++
		}
		for range 50 {
			c := in.JoinRaw(t, wampraw.JSON)
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
		junk := in.JoinRaw(t, wampraw.JSON)
		for i := range 1000 {
			junk.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"hello1"`, i))
			wantWS[router.RejectUndecodable]++
			inputs++
			// Answers for invocations this session never received.
			junk.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[70,%d,{},["forged"]]`, i+1))
			inputs++
		}
		mp := in.JoinRaw(t, wampraw.MsgPack)
		for range 300 {
			mp.WriteMessage(websocket.BinaryMessage, []byte{0xc1, 0xc1, 0xc1})
			wantWS[router.RejectUndecodable]++
			inputs++
		}
		for range 100 {
			c, _, err := wampraw.Dial(ctx, in.WAMPURL, wampraw.Options{})
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
	})
	if !ok {
		return
	}
	valid.Wait()

	t.Run("counts", func(t *testing.T) {
		t.Logf("%d hostile inputs", inputs)
		if inputs < 10_000 {
			t.Fatalf("only %d hostile inputs", inputs)
		}
		// The router still works, and every count is exact.
		if _, err := in.Connect(t, serialize.CBOR).Call(context.Background(), "hello1", nil, nil, nil, nil); err != nil {
			t.Fatalf("the router stopped answering: %v", err)
		}
		// Poll until the counts settle; whatever still differs is reported.
		var got *harness.Scrape
		testkit.Eventually(t, 15*time.Second, "every count exact", func() (any, bool) {
			got = in.Scrape(t)
			var diffs []string
			check := func(what string, got float64, ok bool, want float64) {
				if !ok {
					diffs = append(diffs, fmt.Sprintf("%s: no series, want %v", what, want))
				} else if got != want {
					diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", what, got, want))
				}
			}
			count := func(family, message string) (float64, bool) {
				n, _, ok := got.Summary(family, "message", message)
				return float64(n), ok
			}
			for reason, n := range want {
				v, ok := got.Counter("wamp_observer_log_bad_lines_total", "reason", reason)
				check("bad lines "+reason, v, ok, n)
			}
			for reason, n := range wantWS {
				v, ok := got.Counter("wamp_observer_ws_rejections_total", "reason", reason)
				check("rejections "+reason, v, ok, n)
			}
			v, ok := count("wamp_router_responses_seconds", "hello1")
			check("router responses", v, ok, validCalls+1)
			v, ok = count("wamp_out_responses_seconds", "hello1")
			check("logged responses hello1", v, ok, 2*validLogPairs)
			v, ok = count("wamp_out_responses_seconds", "hello2")
			check("logged responses hello2", v, ok, 1)
			return diffs, len(diffs) == 0
		})
		// No series: none ended otherwise.
		errs, _, _ := got.Summary("wamp_out_errors_seconds", "message", "hello1")
		timeouts, _, _ := got.Summary("wamp_out_timeouts_seconds", "message", "hello1")
		if c := errs + timeouts; c != 0 {
			t.Errorf("valid log pairs ended otherwise: %d", c)
		}
	})

	t.Run("memory", func(t *testing.T) {
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
			t.Errorf("heap grew by %d MiB", grew>>20)
		}
	})
}
