package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/client"
	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/app"
	"github.com/php-wamp-observer/php-wamp-observer/internal/freeport"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/router"
)

// syncBuffer is stderr shared by the program's goroutines and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServesCallsInTheDefaultRealmAndExitsOnCancel starts the program on a
// free port with its defaults otherwise: nexus's own client joins realm1,
// registers and calls; cancelling the context (what SIGTERM does) ends the
// session and returns nil.
func TestServesCallsInTheDefaultRealmAndExitsOnCancel(t *testing.T) {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-wamp", addr}, stderr) }()

	url := "ws://" + addr + "/"
	testkit.Eventually(t, 5*time.Second, "listening", func() (any, bool) {
		rsp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err, false
		}
		rsp.Body.Close()
		return rsp.Status, true
	})
	connect := func() *client.Client {
		c, err := client.ConnectNet(ctx, url, client.Config{Realm: app.DefaultRealm, Serialization: serialize.JSON,
			Logger: testkit.QuietStdLog()})
		if err != nil {
			t.Fatalf("join %s: %v\nstderr: %s", app.DefaultRealm, err, stderr)
		}
		return c
	}
	callee, caller := connect(), connect()
	defer caller.Close()
	defer callee.Close()
	if err := callee.Register("hello", func(_ context.Context, inv *wamp.Invocation) client.InvokeResult {
		return client.InvokeResult{Args: inv.Arguments}
	}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := caller.Call(ctx, "hello", nil, wamp.List{"world"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Arguments) != 1 || res.Arguments[0] != "world" {
		t.Errorf("answer %v, want [world]", res.Arguments)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after the cancel")
	}
	select {
	case <-caller.Done():
	case <-time.After(5 * time.Second):
		t.Error("the caller's session still open 5s after the exit")
	}
}

// TestOriginCheckIsTheRouters: no Origin (non-browser clients) and a
// same-host Origin are let in, a foreign one is not.
func TestOriginCheckIsTheRouters(t *testing.T) {
	for _, c := range []struct {
		origin, host string
		ok           bool
	}{
		{"", "127.0.0.1:9090", true},
		{"http://127.0.0.1:8080", "127.0.0.1:9090", true},
		{"http://LOCALHOST", "localhost:9090", true},
		{"http://[::1]:1", "[::1]:9090", true},
		{"http://evil.example", "127.0.0.1:9090", false},
		{"null", "127.0.0.1:9090", false},
	} {
		check, err := router.OriginPolicy(nil)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := http.NewRequest(http.MethodGet, "http://"+c.host+"/", nil)
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if got := check(r); got != c.ok {
			t.Errorf("Origin %q, Host %q: accepted %v, want %v", c.origin, c.host, got, c.ok)
		}
	}
}

func TestRefusesStrayArguments(t *testing.T) {
	err := run(context.Background(), []string{"extra"}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "unexpected") {
		t.Errorf("run extra: %v", err)
	}
}
