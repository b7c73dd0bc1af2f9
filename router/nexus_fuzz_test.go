package router

// FuzzNexus feeds arbitrary message sequences from three concurrent sessions
// (callers, callees, publishers and subscribers at once, all announcing
// every feature, Payload PassThru Mode included) through the real embedded
// nexus behind the real front, over WebSocket on loopback, exactly as in
// production. Option dicts and meta procedure arguments get values of every
// type a serializer produces. Any panic fails: in nexus's dealer or broker
// goroutine it kills the fuzzing process, which the fuzzer reports as a
// crash with the input. After each input every session must still get an
// answer to a meta call (or have been closed): a stalled router fails too.
//
//	go test -run '^$' -fuzz '^FuzzNexus$' -fuzztime 1m ./router
//
// Seeds are in testdata/fuzz/FuzzNexus and run with every plain `go test`;
// FUZZ_WRITE_SEEDS=1 go test -run TestWriteNexusFuzzSeeds ./router rewrites
// them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/internal/wampraw"
)

// nexusFuzzSessions is how many sessions each input drives at once.
const nexusFuzzSessions = 3

// The input is a sequence of operations of 5 bytes and their options:
//
//	session, kind, id, options count, shape, then per option: key, type, value
//
// A missing byte reads as 0.
var fuzzKinds = []string{
	"call", "call", "yield", "yield", "error", "publish", "subscribe", "unsubscribe",
	"register", "unregister", "cancel", "meta", "goodbye", "hello",
}

var fuzzKeys = []string{
	"ppt_scheme", "ppt_serializer", "ppt_cipher", "ppt_keyid", "timeout", "receive_progress", "progress",
	"disclose_me", "acknowledge", "exclude_me", "match", "invoke", "exclude", "eligible", "exclude_authid",
	"eligible_authrole", "forward_timeout", "mode", "publish_options", "scope", "reason", "message", "x",
}

var fuzzMeta = []string{
	"wamp.session.add_testament", "wamp.session.flush_testaments", "wamp.session.count", "wamp.session.list",
	"wamp.session.get", "wamp.registration.list", "wamp.registration.lookup", "wamp.registration.match",
	"wamp.registration.get", "wamp.registration.list_callees", "wamp.registration.count_callees",
	"wamp.subscription.list", "wamp.subscription.lookup", "wamp.subscription.match", "wamp.subscription.get",
	"wamp.subscription.list_subscribers", "wamp.subscription.count_subscribers", "wamp.subscription.get_events",
	"wamp.session.kill", "wamp.session.modify_details",
}

var fuzzURIs = []string{"p", "q", "com.x", "", "a..b", "wamp.x"}

// fuzzValue builds a value of the type the type byte selects.
func fuzzValue(typ, v byte, depth int) any {
	switch typ % 11 {
	case 0:
		return fuzzURIs[int(v)%len(fuzzURIs)]
	case 1:
		return int(v)
	case 2:
		return -int(v) - 1
	case 3:
		return float64(v) / 3
	case 4:
		return v%2 == 0
	case 5:
		return nil
	case 6:
		if depth > 0 {
			return []any{int(v)}
		}
		return []any{fuzzValue(v, v>>1, depth+1), "s"}
	case 7:
		if depth > 0 {
			return map[string]any{"k": int(v)}
		}
		return map[string]any{fuzzKeys[int(v)%len(fuzzKeys)]: fuzzValue(v>>2, v, depth+1)}
	case 8:
		return uint64(math.MaxUint64) - uint64(v)
	case 9:
		return float64(math.MaxInt64) * float64(v)
	default:
		return strconv.Itoa(int(v)) // a number as a string
	}
}

type fuzzReader struct {
	b []byte
	i int
}

func (r *fuzzReader) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *fuzzReader) done() bool { return r.i >= len(r.b) }

// fuzzSession is one WebSocket session of an input, with a reader that
// remembers the last INVOCATION it got and sees the final sync answer.
type fuzzSession struct {
	conn       *websocket.Conn
	lastInvoke atomic.Uint64
	synced     chan struct{} // closed on the sync answer or when the connection ends
	syncOnce   sync.Once
	readDone   chan struct{}
}

const fuzzSyncID = 9007199254740990

func (s *fuzzSession) read() {
	defer close(s.readDone)
	defer s.syncOnce.Do(func() { close(s.synced) })
	for {
		_, b, err := s.conn.ReadMessage()
		if err != nil {
			return
		}
		var msg []any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&msg) != nil || len(msg) < 2 {
			continue
		}
		num := func(v any) int64 {
			n, _ := v.(json.Number)
			i, _ := n.Int64()
			return i
		}
		code, id := num(msg[0]), num(msg[1])
		switch code {
		case 68:
			s.lastInvoke.Store(uint64(id))
		case 50:
			if id == fuzzSyncID {
				s.syncOnce.Do(func() { close(s.synced) })
			}
		case 8:
			if len(msg) > 2 {
				if num(msg[2]) == fuzzSyncID {
					s.syncOnce.Do(func() { close(s.synced) })
				}
			}
		}
	}
}

// fuzzMessages decodes an input into frames, each for one session.
func fuzzMessages(data []byte, lastInvoke func(int) uint64) func() (int, []any, bool) {
	r := &fuzzReader{b: data}
	ops := 0
	return func() (int, []any, bool) {
		if r.done() || ops >= 64 {
			return 0, nil, false
		}
		ops++
		sess := int(r.next()) % nexusFuzzSessions
		kind := fuzzKinds[int(r.next())%len(fuzzKinds)]
		id := uint64(r.next()) + 1
		nOpts := int(r.next()) % 6
		shape := r.next()
		opts := map[string]any{}
		for range nOpts {
			opts[fuzzKeys[int(r.next())%len(fuzzKeys)]] = fuzzValue(r.next(), r.next(), 0)
		}
		uri := fuzzURIs[int(shape)%len(fuzzURIs)]
		args := []any{fuzzValue(shape, shape>>3, 0)}
		if shape&0x80 != 0 {
			args = []any{uri, []any{}, map[string]any{}} // a testament's shape
		}
		invocation := lastInvoke(sess)
		if shape&0x40 == 0 || invocation == 0 {
			invocation = id
		}
		var msg []any
		switch kind {
		case "call":
			msg = []any{48, id, opts, uri, args}
		case "yield":
			msg = []any{70, invocation, opts, args}
		case "error":
			msg = []any{8, 68, invocation, opts, "wamp.error.x", args}
		case "publish":
			msg = []any{16, id, opts, uri, args, opts}
		case "subscribe":
			msg = []any{32, id, opts, uri}
		case "unsubscribe":
			msg = []any{34, id, fuzzValue(shape, byte(id), 0)}
		case "register":
			msg = []any{64, id, opts, uri}
		case "unregister":
			msg = []any{66, id, fuzzValue(shape, byte(id), 0)}
		case "cancel":
			msg = []any{49, id, opts}
		case "meta":
			msg = []any{48, id, opts, fuzzMeta[int(shape)%len(fuzzMeta)], args, opts}
		case "goodbye":
			msg = []any{6, opts, "wamp.close.normal"}
		case "hello":
			msg = []any{1, "realm1", opts}
		}
		return sess, msg, true
	}
}

// fuzzHelloDetails announce every role and feature, so that nexus goes down
// every path, Payload PassThru Mode included.
const fuzzHelloDetails = `{"roles":{` +
	`"caller":{"features":{"payload_passthru_mode":true,"progressive_call_results":true,"call_canceling":true,"call_timeout":true,"caller_identification":true,"progressive_call_invocations":true}},` +
	`"callee":{"features":{"payload_passthru_mode":true,"progressive_call_results":true,"call_canceling":true,"call_timeout":true,"caller_identification":true,"pattern_based_registration":true,"shared_registration":true,"progressive_call_invocations":true}},` +
	`"publisher":{"features":{"payload_passthru_mode":true,"publisher_exclusion":true,"publisher_identification":true,"subscriber_blackwhite_listing":true}},` +
	`"subscriber":{"features":{"payload_passthru_mode":true,"pattern_based_subscription":true,"publisher_identification":true}}}}`

func FuzzNexus(f *testing.F) {
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog(), MaxCallsInFlight: 50})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(r)
	f.Cleanup(func() { r.Close(); srv.Close() })
	url := wsURL(srv)
	var details map[string]any
	if err := json.Unmarshal([]byte(fuzzHelloDetails), &details); err != nil {
		f.Fatal(err)
	}
	join := wampraw.Options{Timeout: 5 * time.Second, Details: details}

	f.Fuzz(func(t *testing.T, data []byte) {
		sessions := make([]*fuzzSession, nexusFuzzSessions)
		for i := range sessions {
			c, err := wampraw.Join(context.Background(), url, "realm1", join)
			if err != nil {
				t.Fatalf("join: %v", err)
			}
			conn := c.Conn
			s := &fuzzSession{conn: conn, synced: make(chan struct{}), readDone: make(chan struct{})}
			sessions[i] = s
			defer func() { conn.Close(); <-s.readDone }()
			go s.read()
		}
		next := fuzzMessages(data, func(i int) uint64 { return sessions[i].lastInvoke.Load() })
		for {
			i, msg, ok := next()
			if !ok {
				break
			}
			b, err := json.Marshal(msg)
			if err != nil {
				t.Fatalf("marshal %v: %v", msg, err)
			}
			_ = sessions[i].conn.WriteMessage(websocket.TextMessage, b) // may be closed by now
		}
		// Everything sent has been through nexus once each session's meta
		// call is answered (or its connection is gone).
		for _, s := range sessions {
			_ = s.conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `[48,%d,{},"wamp.session.count",[]]`, uint64(fuzzSyncID)))
		}
		for i, s := range sessions {
			select {
			case <-s.synced:
			case <-time.After(5 * time.Second):
				t.Fatalf("session %d: no answer from the router within 5 s", i)
			}
		}
	})
}

type nexusSeed struct {
	name string
	data []byte
}

// op builds one operation of the input format.
func op(session, kind, id, shape byte, opts ...[3]byte) []byte {
	b := []byte{session, kind, id, byte(len(opts)), shape}
	for _, o := range opts {
		b = append(b, o[:]...)
	}
	return b
}

func kindOf(name string) byte {
	for i, k := range fuzzKinds {
		if k == name {
			return byte(i)
		}
	}
	panic(name)
}

func keyOf(name string) byte {
	for i, k := range fuzzKeys {
		if k == name {
			return byte(i)
		}
	}
	panic(name)
}

func nexusFuzzSeeds() []nexusSeed {
	cat := func(ops ...[]byte) []byte {
		var b []byte
		for _, o := range ops {
			b = append(b, o...)
		}
		return b
	}
	str, num, list := byte(0), byte(1), byte(6)
	return []nexusSeed{
		{"register_call_yield", cat(op(0, kindOf("register"), 1, 0), op(1, kindOf("call"), 2, 0), op(0, kindOf("yield"), 3, 0x40))},
		{"regression_ppt_serializer_number_in_call", cat(op(0, kindOf("register"), 1, 0),
			op(1, kindOf("call"), 2, 0, [3]byte{keyOf("ppt_scheme"), str, 2}, [3]byte{keyOf("ppt_serializer"), num, 1}))},
		{"regression_ppt_cipher_list_in_yield", cat(op(0, kindOf("register"), 1, 0),
			op(1, kindOf("call"), 2, 0, [3]byte{keyOf("ppt_scheme"), str, 2}),
			op(0, kindOf("yield"), 3, 0x40, [3]byte{keyOf("ppt_scheme"), str, 2}, [3]byte{keyOf("ppt_cipher"), list, 1}))},
		{"regression_ppt_keyid_number_in_publish", cat(op(2, kindOf("subscribe"), 1, 0),
			op(1, kindOf("publish"), 2, 0, [3]byte{keyOf("ppt_scheme"), str, 2}, [3]byte{keyOf("ppt_keyid"), num, 7}))},
		{"testament_with_ppt_publish_options", cat(
			op(1, kindOf("meta"), 2, 0x80, [3]byte{keyOf("publish_options"), 7, keyOf("ppt_scheme")}),
			op(1, kindOf("goodbye"), 0, 0))},
		{"meta_procedures_with_odd_arguments", cat(op(0, kindOf("meta"), 1, 5), op(0, kindOf("meta"), 2, 6),
			op(0, kindOf("meta"), 3, 7), op(0, kindOf("meta"), 4, 8), op(0, kindOf("meta"), 5, 17))},
		{"cancel_and_error_mid_call", cat(op(0, kindOf("register"), 1, 0), op(1, kindOf("call"), 2, 0, [3]byte{keyOf("timeout"), num, 50}),
			op(1, kindOf("cancel"), 2, 0, [3]byte{keyOf("mode"), str, 1}), op(0, kindOf("error"), 0, 0x40))},
	}
}

// TestWriteNexusFuzzSeeds writes the seeds to testdata/fuzz/FuzzNexus.
func TestWriteNexusFuzzSeeds(t *testing.T) {
	if os.Getenv("FUZZ_WRITE_SEEDS") == "" {
		t.Skip("set FUZZ_WRITE_SEEDS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzNexus")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range nexusFuzzSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data)
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
