package router

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
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
// It is released at the end of the test at the latest.
func (c *countingConn) holdNextWrite(t *testing.T) (release func()) {
	g := make(chan struct{})
	c.gate.Store(&g)
	var once sync.Once
	release = func() { once.Do(func() { close(g) }) }
	t.Cleanup(release)
	return release
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
	release := subConn.holdNextWrite(t)
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
		queued += int64(len(frame)) + 2 // and the frame's header: short payloads
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
			pool := newChunkPool()
			var total atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				bw := &batchingWriter{ResponseWriter: w, pool: pool, slack: time.Second, total: &total}
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
			if coalesce {
				s.bc.start()
			}
			deadline := func() time.Time { return time.Now().Add(10 * time.Second) }
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
					s.bc.release()
					// What the socket did not take at once, as the
					// client's writer would.
					if err := s.bc.drain(deadline); err != nil {
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
	release := subConn.holdNextWrite(t)
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

// tcpPair is both ends of a loopback TCP connection, the server's under a
// started batchConn, as a client's peer has it.
func tcpPair(t *testing.T) (bc *batchConn, client net.Conn, total *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	total = new(atomic.Int64)
	bc = newBatchConn(server, newChunkPool(), time.Second, total)
	if bc.raw == nil {
		t.Fatal("no raw connection under a TCP one: every write would wait for the writer")
	}
	bc.start()
	return bc, client, total
}

// A frame the socket takes is written by the goroutine that framed it,
// at once: nobody drains here, and the bytes still arrive.
func TestAFrameIsWrittenByItsFramerWithoutTheWriter(t *testing.T) {
	bc, client, total := tcpPair(t)
	for i := range 100 {
		msg := fmt.Appendf(nil, "frame %03d;", i)
		if _, err := bc.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil || string(got) != string(msg) {
			t.Fatalf("frame %d: read %q, %v", i, got, err)
		}
	}
	select {
	case <-bc.wake:
		t.Error("the writer was woken for frames the socket took")
	default:
	}
	if n, _ := bc.pending(); n != 0 || total.Load() != 0 {
		t.Errorf("%d bytes pending (%d over all), want none", n, total.Load())
	}
}

// A client that does not read never blocks the framer: what its socket
// does not take waits for the writer, in order, counted, and holds only
// the chunks of what is still pending while the writer catches up, and
// counts as pending only the frames not yet written.
func TestWritesToAFullSocketWaitForTheWriterInOrder(t *testing.T) {
	bc, client, total := tcpPair(t)
	const pieces, size = 2400, 10 << 10 // 24 MiB, beyond any loopback buffers, in copies
	var sent bytes.Buffer
	for i := range pieces {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		sent.Write(p)
		if _, err := bc.Write(p); err != nil { // returns at once, or this test times out
			t.Fatal(err)
		}
		bc.framed() // each piece a frame
	}
	pending, _ := bc.pending()
	if pending == 0 || int64(pending) != total.Load() {
		t.Fatalf("%d bytes pending, %d over all: want the socket's leftover, counted", pending, total.Load())
	}
	select {
	case <-bc.wake:
	default:
		t.Fatal("the writer was not woken for what the socket left")
	}
	received := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(client, int64(sent.Len())))
		received <- b
	}()
	drained := make(chan error, 1)
	go func() { drained <- bc.drain(func() time.Time { return time.Now().Add(10 * time.Second) }) }()
	overheld := 0 // the most bytes held in chunks beyond the pending ones
	miscounted := ""
	for done := false; !done; {
		select {
		case err := <-drained:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case <-time.After(time.Millisecond):
			bc.mu.Lock()
			held := 0
			for _, ch := range bc.chunks {
				held += len(*ch.buf)
			}
			overheld = max(overheld, held-bc.size)
			if want := (bc.size + size - 1) / size; len(bc.ends) != want {
				miscounted = fmt.Sprintf("%d frames counted pending for %d bytes of %d-byte frames", len(bc.ends), bc.size, size)
			}
			bc.mu.Unlock()
		}
	}
	if miscounted != "" {
		t.Error("while draining,", miscounted)
	}
	if overheld > chunkSize {
		t.Errorf("while draining, chunks held %d bytes beyond the pending ones, over one chunk (which may be partly written)", overheld)
	}
	if got := <-received; !bytes.Equal(got, sent.Bytes()) {
		t.Fatalf("received %d bytes, not the %d sent in order", len(got), sent.Len())
	}
	bc.mu.Lock()
	chunks := len(bc.chunks)
	bc.mu.Unlock()
	if n, _ := bc.pending(); n != 0 || total.Load() != 0 || chunks != 0 {
		t.Errorf("after the drain: %d bytes pending, %d over all, %d chunks held; want none", n, total.Load(), chunks)
	}
}

// Once a write deadline the writer set has passed, the runtime refuses any
// write on the socket, even one it would take: a frame written then is the
// writer's to write with a new deadline, not the end of the connection.
func TestAFrameAfterAnExpiredDeadlineGoesToTheWriter(t *testing.T) {
	bc, client, _ := tcpPair(t)
	if err := bc.Conn.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil { // as a drain's, long past
		t.Fatal(err)
	}
	msg := []byte("after the deadline")
	if _, err := bc.Write(msg); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bc.wake:
	default:
		t.Fatal("the writer was not woken for the frame")
	}
	if err := bc.drain(func() time.Time { return time.Now().Add(10 * time.Second) }); err != nil {
		t.Fatalf("the writer could not write the frame: %v", err)
	}
	got := make([]byte, len(msg))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %q, %v", got, err)
	}
}
