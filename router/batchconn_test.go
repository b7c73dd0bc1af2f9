package router

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gorilla/websocket"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// countingListener hands out connections that count their writes (one
// Write on a *net.TCPConn is one system call) and can hold the next write
// until released: a writer stuck in a write while frames pile up behind it.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*countingConn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, cc)
	l.mu.Unlock()
	return cc, nil
}

// conn is the i-th connection accepted.
func (l *countingListener) conn(t *testing.T, i int) *countingConn {
	var c *countingConn
	waitUntil(t, "the connection accepted", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.conns) > i {
			c = l.conns[i]
		}
		return c != nil
	})
	return c
}

type countingConn struct {
	net.Conn
	writes    atomic.Int64
	deadlines atomic.Int64                  // write deadlines set
	reads     atomic.Int64                  // read deadlines set
	gate      atomic.Pointer[chan struct{}] // the next write waits for it to close
}

func (c *countingConn) SetReadDeadline(t time.Time) error {
	c.reads.Add(1)
	return c.Conn.SetReadDeadline(t)
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetWriteDeadline(t)
}

func (c *countingConn) Write(b []byte) (int, error) {
	if g := c.gate.Swap(nil); g != nil {
		<-*g
	}
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// holdNextWrite makes the next write wait until release is called.
func (c *countingConn) holdNextWrite() (release func()) {
	g := make(chan struct{})
	c.gate.Store(&g)
	return func() { close(g) }
}

func startCountingRouter(t *testing.T, cfg Config) (*httptest.Server, *countingListener) {
	t.Helper()
	cfg.Realm = "realm1"
	cfg.Logger = testkit.QuietLog()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r)
	ln := &countingListener{Listener: srv.Listener}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { r.Close(); srv.Close() })
	return srv, ln
}

// subscribe joins a raw client and subscribes it to topic.
func subscribe(t *testing.T, url, topic string) *rawClient {
	c := joinRaw(t, url, thruwayHello)
	c.send(fmt.Sprintf(`[32,1,{},%q]`, topic))
	c.expect(33)
	return c
}

// Frames that wait for one connection while its writer is busy go out
// together: 33 events, the first held in its write until the other 32 are
// queued, take 2 writes instead of 33.
func TestFramesWaitingForOneClientGoOutInOneWrite(t *testing.T) {
	srv, ln := startCountingRouter(t, Config{})
	sub := joinRaw(t, wsURL(srv), thruwayHello)
	sub.send(`[32,1,{},"burst"]`)
	subscription := wampID(t, sub.expect(33)[2])
	subConn := ln.conn(t, 0)
	pub := joinRaw(t, wsURL(srv), thruwayHello)

	before := subConn.writes.Load()
	release := subConn.holdNextWrite()
	for id := 1; id <= 33; id++ {
		pub.send(fmt.Sprintf(`[16,%d,{"acknowledge":true},"burst",[%d]]`, id, id))
	}
	// Every event, encoded as the router encodes it, waits for the
	// subscriber, the first in the held write: only then is the write let
	// go. (The publisher's acknowledgements are written by then.)
	var queued int64
	for id := 1; id <= 33; id++ {
		ack := pub.expect(17)
		frame, err := (&serialize.JSONSerializer{}).Serialize(&wamp.Event{Subscription: subscription,
			Publication: wampID(t, ack[2]), Details: wamp.Dict{}, Arguments: wamp.List{id}})
		if err != nil {
			t.Fatal(err)
		}
		queued += int64(len(frame))
	}
	r := srv.Config.Handler.(*Router)
	testkit.Eventually(t, 5*time.Second, "33 events queued for the subscriber", func() (any, bool) {
		q := r.peer.queuedTotal.Load()
		return q, q == queued
	})
	release()
	for id := 1; id <= 33; id++ {
		if ev := sub.expect(36); fmt.Sprint(ev[4]) != fmt.Sprintf("[%d]", id) {
			t.Fatalf("event %d: got %v", id, ev)
		}
	}
	if n := subConn.writes.Load() - before; n != 2 {
		t.Errorf("33 events took %d writes, want 2 (the held one, then the rest together)", n)
	}
}

// wampID reads an id from a message rawClient decoded.
func wampID(t *testing.T, v any) wamp.ID {
	t.Helper()
	n, err := strconv.ParseUint(fmt.Sprint(v), 10, 64)
	if err != nil {
		t.Fatalf("not an id: %v", v)
	}
	return wamp.ID(n)
}

// A frame alone in the queue is written at once, on its own: coalescing
// never waits for company.
func TestALoneFrameIsWrittenAtOnce(t *testing.T) {
	srv, ln := startCountingRouter(t, Config{})
	sub := subscribe(t, wsURL(srv), "one")
	subConn := ln.conn(t, 0)
	pub := joinRaw(t, wsURL(srv), thruwayHello)
	for id := 1; id <= 5; id++ {
		before := subConn.writes.Load()
		pub.send(fmt.Sprintf(`[16,%d,{},"one",[%d]]`, id, id))
		sub.expect(36)
		if n := subConn.writes.Load() - before; n != 1 {
			t.Fatalf("event %d took %d writes, want 1", id, n)
		}
	}
}

// A client that stops reading while bursts are coalesced for it is still
// dropped within the write timeout, as with one write per frame.
func TestCoalescedWritesAreBoundedByTheWriteTimeout(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	srv, _ := startCountingRouter(t, Config{Rejected: rej.add,
		WriteTimeout: 200 * time.Millisecond, OutQueueSize: 1 << 16, OutQueueBytes: 1 << 30, MaxMessageSize: 1 << 20})
	sub := subscribe(t, wsURL(srv), "flood") // and never reads again
	pub := joinRaw(t, wsURL(srv), thruwayHello)
	big := fmt.Sprintf(`[16,1,{},"flood",["%0*d"]]`, 4000, 0)
	for i := 0; i < 20000 && rej.get(RejectSlowConsumer) == 0; i++ {
		if err := pub.conn.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the subscriber dropped as a slow consumer", func() bool { return rej.get(RejectSlowConsumer) == 1 })
	sub.expectClosed(5 * time.Second)
}

// BenchmarkBurstWrites writes bursts of 32 small WebSocket frames from
// the server side of a loopback connection to a client that reads and
// discards: one write per frame, as gorilla does alone, against one
// coalesced write per burst.
func BenchmarkBurstWrites(b *testing.B) {
	frame := []byte(`[50,123456,{},["Hello from hello3"]]`)
	for _, coalesce := range []bool{false, true} {
		b.Run(fmt.Sprintf("coalesced=%v", coalesce), func(b *testing.B) {
			type server struct {
				ws *websocket.Conn
				bc *batchConn
			}
			accepted := make(chan server, 1)
			pool := newBatchPool()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				bw := &batchingWriter{ResponseWriter: w, pool: pool}
				ws, err := (&websocket.Upgrader{}).Upgrade(bw, r, nil)
				if err != nil {
					return
				}
				accepted <- server{ws, bw.conn}
			}))
			defer srv.Close()
			client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, _, err := client.NextReader(); err != nil {
						return
					}
				}
			}()
			s := <-accepted
			b.ReportAllocs()
			b.SetBytes(int64(32 * len(frame)))
			for b.Loop() {
				if coalesce {
					s.bc.hold()
				}
				for range 32 {
					if err := s.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
						b.Fatal(err)
					}
				}
				if coalesce {
					if err := s.bc.release(); err != nil {
						b.Fatal(err)
					}
				}
			}
			s.ws.Close()
			client.Close()
			<-done
		})
	}
}

// Large and small frames coalesced together arrive whole and in order:
// pieces are copied or referenced (copyLimit) but always written as given.
func TestCoalescedFramesOfEverySizeArriveIntact(t *testing.T) {
	srv, ln := startCountingRouter(t, Config{MaxMessageSize: 1 << 20})
	sub := subscribe(t, wsURL(srv), "mixed")
	subConn := ln.conn(t, 0)
	pub := joinRaw(t, wsURL(srv), thruwayHello)
	sizes := []int{0, 10 << 10, 100 << 10, 5 << 10, 3, 20 << 10, 64 << 10, 1, 200 << 10}
	release := subConn.holdNextWrite()
	for i, n := range sizes {
		pub.send(fmt.Sprintf(`[16,%d,{"acknowledge":true},"mixed",[%d,"%s"]]`, i+1, i, strings.Repeat(string(rune('a'+i)), n)))
	}
	for range sizes {
		pub.expect(17)
	}
	release()
	for i, n := range sizes {
		ev := sub.expect(36)
		args, _ := ev[4].([]any)
		if len(args) != 2 || fmt.Sprint(args[0]) != fmt.Sprint(i) || args[1] != strings.Repeat(string(rune('a'+i)), n) {
			t.Fatalf("event %d (%d bytes) arrived changed: %.80v", i, n, ev)
		}
	}
}

// A client's write deadline is a change to the runtime's timers each time
// it is set: one sent 200 events in a row, each in a write of its own,
// gets it set once, not 200 times, as long as the deadline would move by
// less than an eighth of the write timeout.
func TestTheWriteDeadlineIsNotSetForEveryFrame(t *testing.T) {
	srv, ln := startCountingRouter(t, Config{WriteTimeout: time.Hour})
	sub := subscribe(t, wsURL(srv), "steady")
	subConn := ln.conn(t, 0)
	pub := joinRaw(t, wsURL(srv), thruwayHello)

	before := subConn.deadlines.Load()
	for id := 1; id <= 200; id++ {
		pub.send(fmt.Sprintf(`[16,%d,{},"steady",[%d]]`, id, id))
		if ev := sub.expect(36); fmt.Sprint(ev[4]) != fmt.Sprintf("[%d]", id) {
			t.Fatalf("event %d: got %v", id, ev)
		}
	}
	if set := subConn.deadlines.Load() - before; set > 1 {
		t.Errorf("the write deadline was set %d times for 200 frames, want at most 1", set)
	}
}

// The keep-alive's read deadline likewise moves only when it would move by
// more than an eighth of its interval, not for every message read.
func TestTheReadDeadlineIsNotMovedForEveryMessage(t *testing.T) {
	srv, ln := startCountingRouter(t, Config{KeepAlive: time.Hour})
	pub := joinRaw(t, wsURL(srv), thruwayHello)
	pubConn := ln.conn(t, 0)

	before := pubConn.reads.Load()
	for id := 1; id <= 200; id++ {
		pub.send(fmt.Sprintf(`[16,%d,{"acknowledge":true},"steady",[]]`, id))
		pub.expect(17)
	}
	if set := pubConn.reads.Load() - before; set > 1 {
		t.Errorf("the read deadline was set %d times for 200 messages, want at most 1", set)
	}
}
