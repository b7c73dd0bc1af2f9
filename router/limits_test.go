package router

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gammazero/nexus/v3/wamp/crsign"
	"github.com/gorilla/websocket"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// rejections counts what the router reports, by reason.
type rejections struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *rejections) add(reason string) { r.mu.Lock(); r.n[reason]++; r.mu.Unlock() }
func (r *rejections) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

func TestRejectionsAreCountedByReason(t *testing.T) {
	rej := &rejections{n: map[string]int{}}
	rec := newRecorder()
	srv := startRouter(t, Config{OpenSession: rec.open(), MaxMessageSize: 1024, Rejected: rej.add})
	dial := func(protocols []string, origin string) *websocket.Conn {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		conn, _, _ := (&websocket.Dialer{Subprotocols: protocols}).Dial(wsURL(srv), h)
		return conn
	}
	if c := dial([]string{"wamp.2.json"}, "http://evil.example"); c != nil {
		t.Fatal("a foreign Origin was let in")
	}
	if c := dial([]string{"mqtt"}, ""); c != nil {
		t.Fatal("a handshake without a WAMP subprotocol was let in")
	}

	// A message before HELLO: nexus aborts the join.
	early := dialRaw(t, wsURL(srv), nil)
	early.send(`[48,1,{},"hello1"]`)
	early.expect(3) // ABORT

	// Undecodable messages are dropped, the session goes on.
	c := dialRaw(t, wsURL(srv), nil)
	c.send(thruwayHello)
	c.expect(2)
	c.send(`[48,1,{},"no.such"`) // truncated JSON
	c.send(`not json at all`)
	c.send(`[48,2,{},"no.such"]`)
	if msg := c.expect(8); fmt.Sprint(msg[2]) != "2" {
		t.Fatalf("the session did not carry on after bad messages: %v", msg)
	}

	// Over the size limit: the connection is closed.
	big := dialRaw(t, wsURL(srv), nil)
	big.send(thruwayHello)
	big.expect(2)
	big.send(`[48,3,{},"p",["` + strings.Repeat("x", 2000) + `"]]`)
	big.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := big.conn.ReadMessage(); err == nil {
		t.Fatal("an oversized message did not close the connection")
	}

	// Invalid msgpack on a msgpack connection.
	mp := dialRaw(t, wsURL(srv), nil, "wamp.2.msgpack")
	if err := mp.conn.WriteMessage(websocket.BinaryMessage, []byte{0xc1, 0xff, 0x00}); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{RejectOrigin: 1, RejectSubprotocol: 1, RejectJoin: 1, RejectUndecodable: 3, RejectTooLarge: 1}
	waitUntil(t, "every rejection counted", func() bool {
		for reason, n := range want {
			if rej.get(reason) != n {
				return false
			}
		}
		return true
	})
	waitUntil(t, "the closed session ended", func() bool { return countOf(rec.snapshot(), "close") >= 1 })
}

func writeCredentials(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCredentialsLetInTicketAndCRAClientsOnly, directly and through a
// relay (Config.Upstream), which passes HELLO, CHALLENGE, AUTHENTICATE
// and WELCOME or ABORT through: the upstream's authentication applies
// unchanged.
func TestCredentialsLetInTicketAndCRAClientsOnly(t *testing.T) {
	creds, err := LoadCredentials(writeCredentials(t,
		`[{"authid":"php-app","ticket":"t1cket"},{"authid":"worker","secret":"s3cret","role":"backend"}]`))
	if err != nil {
		t.Fatal(err)
	}
	rej := &rejections{n: map[string]int{}}
	srv := startRouter(t, Config{Credentials: creds, Rejected: rej.add})
	relayRej := &rejections{n: map[string]int{}}
	relayed := startRelay(t, wsURL(srv), Config{Rejected: relayRej.add})
	for _, url := range []string{wsURL(srv), wsURL(relayed)} {
		letInTicketAndCRAClientsOnly(t, url)
	}
	waitUntil(t, "ten refused joins counted upstream", func() bool { return rej.get(RejectJoin) == 10 })
	if n := relayRej.get(RejectJoin); n != 0 {
		t.Errorf("the relay refused %d joins itself", n)
	}
}

func letInTicketAndCRAClientsOnly(t *testing.T, url string) {
	connect := func(cfg client.Config) (*client.Client, error) {
		cfg.Realm = "realm1"
		cfg.Logger = testkit.QuietStdLog()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.ConnectNet(ctx, url, cfg)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	ticket := func(secret string) client.AuthFunc {
		return func(*wamp.Challenge) (string, wamp.Dict) { return secret, wamp.Dict{} }
	}
	cra := func(secret string) client.AuthFunc {
		return func(c *wamp.Challenge) (string, wamp.Dict) {
			return crsign.RespondChallenge(secret, c, nil), wamp.Dict{}
		}
	}
	for _, tc := range []struct {
		name   string
		cfg    client.Config
		letIn  bool
		wantID string
	}{
		{"anonymous", client.Config{}, false, ""},
		{"ticket", client.Config{HelloDetails: wamp.Dict{"authid": "php-app"}, AuthHandlers: map[string]client.AuthFunc{"ticket": ticket("t1cket")}}, true, "php-app"},
		{"wrong ticket", client.Config{HelloDetails: wamp.Dict{"authid": "php-app"}, AuthHandlers: map[string]client.AuthFunc{"ticket": ticket("guess")}}, false, ""},
		{"ticket for a CRA-only user", client.Config{HelloDetails: wamp.Dict{"authid": "worker"}, AuthHandlers: map[string]client.AuthFunc{"ticket": ticket("s3cret")}}, false, ""},
		{"wampcra", client.Config{HelloDetails: wamp.Dict{"authid": "worker"}, AuthHandlers: map[string]client.AuthFunc{"wampcra": cra("s3cret")}}, true, "worker"},
		{"wrong wampcra secret", client.Config{HelloDetails: wamp.Dict{"authid": "worker"}, AuthHandlers: map[string]client.AuthFunc{"wampcra": cra("guess")}}, false, ""},
		{"unknown authid", client.Config{HelloDetails: wamp.Dict{"authid": "nobody"}, AuthHandlers: map[string]client.AuthFunc{"ticket": ticket("t1cket")}}, false, ""},
	} {
		t.Run(tc.name+" at "+url, func(t *testing.T) {
			c, err := connect(tc.cfg)
			if tc.letIn != (err == nil) {
				t.Fatalf("let in: %v, want %v (%v)", err == nil, tc.letIn, err)
			}
			if tc.letIn {
				if got, _ := wamp.AsString(c.RealmDetails()["authid"]); got != tc.wantID {
					t.Errorf("authid %q, want %q", got, tc.wantID)
				}
			}
		})
	}
}

func TestLoadCredentialsRefusesBadFiles(t *testing.T) {
	for _, body := range []string{
		``, `{}`, `[]`, `[{"ticket":"x"}]`, `[{"authid":"a"}]`, `[{"authid":"a","ticket":"x"},{"authid":"a","secret":"y"}]`,
	} {
		if _, err := LoadCredentials(writeCredentials(t, body)); err == nil {
			t.Errorf("accepted %q", body)
		}
	}
	if _, err := LoadCredentials(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("accepted a missing file")
	}
}

// TestShutdownSaysGoodbyeToEverySession: nexus queues GOODBYE on shutdown
// but may close the connection before writing it; the front makes sure
// every session gets it.
func TestShutdownSaysGoodbyeToEverySession(t *testing.T) {
	// A small outbound queue, kept busy: nexus drops GOODBYE when the
	// queue is full, and discards it if still queued when it closes. (A
	// queue smaller than the 50 answers below makes these clients slow
	// consumers, disconnected without GOODBYE.)
	r, err := New(Config{Realm: "realm1", Logger: testkit.QuietLog(), OutQueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r)
	defer srv.Close()
	const sessions = 100
	conns := make([]*rawClient, sessions)
	for i := range conns {
		conns[i] = dialRaw(t, wsURL(srv), nil)
		conns[i].send(thruwayHello)
		conns[i].expect(2)
	}
	for _, c := range conns {
		for id := range 50 { // each answered with an ERROR, unread for now
			c.send(fmt.Sprintf(`[48,%d,{},"nobody.registered"]`, id+1))
		}
	}
	closed := make(chan struct{})
	go func() { r.Close(); close(closed) }()
	var wg sync.WaitGroup
	missing := make(chan int, sessions)
	for i, c := range conns {
		wg.Go(func() {
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, b, err := c.conn.ReadMessage()
				if err != nil {
					missing <- i
					return
				}
				if strings.HasPrefix(string(b), "[6,") {
					return
				}
			}
		})
	}
	wg.Wait()
	close(missing)
	if n := len(missing); n > 0 {
		t.Errorf("%d of %d sessions closed without GOODBYE", n, sessions)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the router did not close")
	}
}
