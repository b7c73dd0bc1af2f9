// Package wampraw is a WAMP client over a bare WebSocket, driven by hand:
// it sends whatever it is given, also what a well-behaved client never
// would, and reads only when asked. The end-to-end tests use it (through
// internal/harness) and so does wampload's attack mode, which is why it is
// a package of its own and does not import testing.
//
// Messages are JSON (wamp.2.json); a session may join with wamp.2.msgpack,
// after which it sends and reads frames itself.
package wampraw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/gorilla/websocket"
)

// Subprotocols a router offers.
const (
	JSON    = "wamp.2.json"
	MsgPack = "wamp.2.msgpack"
)

// Options say how to connect and join; the zero value joins as every role,
// over JSON, within 10 s.
type Options struct {
	Protocol string         // the WebSocket subprotocol offered; "": JSON
	Header   http.Header    // handshake headers (Host, Origin); nil: none
	RecvBuf  int            // SO_RCVBUF, so that a non-reader's buffer fills soon; 0: the system's
	Timeout  time.Duration  // for the handshake, and again from HELLO to WELCOME; 0: 10 s
	Details  map[string]any // HELLO details; nil: AllRoles
}

// AllRoles are HELLO details announcing caller, callee, publisher and
// subscriber, with no features.
func AllRoles() map[string]any {
	return map[string]any{"roles": map[string]any{"caller": map[string]any{}, "callee": map[string]any{},
		"publisher": map[string]any{}, "subscriber": map[string]any{}}}
}

// Conn is one WebSocket connection. The embedded *websocket.Conn is there
// for frames this package does not build (binary, truncated, oversized)
// and for closing without GOODBYE.
type Conn struct {
	*websocket.Conn
	Session uint64 // the session id from WELCOME, once joined
}

// Dial opens a WebSocket offering o.Protocol, and does not join. A refused
// handshake returns the router's response, if there was one.
func Dial(ctx context.Context, url string, o Options) (*Conn, *http.Response, error) {
	nd := &net.Dialer{Timeout: o.timeout()}
	if o.RecvBuf > 0 {
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.RecvBuf)
			})
			return errors.Join(err, serr)
		}
	}
	protocol := o.Protocol
	if protocol == "" {
		protocol = JSON
	}
	d := websocket.Dialer{NetDialContext: nd.DialContext, Subprotocols: []string{protocol}, HandshakeTimeout: o.timeout()}
	conn, rsp, err := d.DialContext(ctx, url, o.Header)
	if err != nil {
		if rsp != nil {
			err = fmt.Errorf("handshake: %s: %w", rsp.Status, err)
		}
		return nil, rsp, err
	}
	return &Conn{Conn: conn}, rsp, nil
}

// Join dials url and joins realm with o.Details. On an error nothing is
// left open.
func Join(ctx context.Context, url, realm string, o Options) (*Conn, error) {
	c, _, err := Dial(ctx, url, o)
	if err != nil {
		return nil, err
	}
	if err := c.join(realm, o); err != nil {
		c.Close()
		return nil, fmt.Errorf("join %s: %w", url, err)
	}
	return c, nil
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return 10 * time.Second
}

// join sends HELLO and waits for WELCOME, in the subprotocol the router
// chose; then it clears the deadlines it set.
func (c *Conn) join(realm string, o Options) error {
	details := o.Details
	if details == nil {
		details = AllRoles()
	}
	defer func() {
		_ = c.SetReadDeadline(time.Time{})
		_ = c.SetWriteDeadline(time.Time{})
	}()
	if c.Subprotocol() == MsgPack {
		var s serialize.MessagePackSerializer
		hello, err := s.Serialize(&wamp.Hello{Realm: wamp.URI(realm), Details: wamp.Dict(details)})
		if err != nil {
			return err
		}
		_ = c.SetWriteDeadline(time.Now().Add(o.timeout()))
		if err := c.WriteMessage(websocket.BinaryMessage, hello); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(o.timeout()))
		_, b, err := c.ReadMessage()
		if err != nil {
			return err
		}
		msg, err := s.Deserialize(b)
		if err != nil {
			return err
		}
		welcome, ok := msg.(*wamp.Welcome)
		if !ok {
			return fmt.Errorf("got %v, want WELCOME", msg.MessageType())
		}
		c.Session = uint64(welcome.ID)
		return nil
	}
	if err := c.Send(o.timeout(), 1, realm, details); err != nil {
		return err
	}
	msg, err := c.Read(o.timeout())
	if err != nil {
		return err
	}
	if len(msg) < 2 || string(msg[0]) != "2" {
		return fmt.Errorf("got %s, want WELCOME", Truncate(fmt.Sprint(msg), 200))
	}
	c.Session, _ = strconv.ParseUint(string(msg[1]), 10, 64)
	return nil
}

// Send writes one JSON message made of elems, within the time given.
func (c *Conn) Send(within time.Duration, elems ...any) error {
	b, err := json.Marshal(elems)
	if err != nil {
		return err
	}
	return c.SendBytes(within, b)
}

// SendBytes writes b as one text message, within the time given, whatever
// it holds.
func (c *Conn) SendBytes(within time.Duration, b []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(within))
	return c.WriteMessage(websocket.TextMessage, b)
}

// Read reads one JSON message within the time given, split into its
// elements.
func (c *Conn) Read(within time.Duration) ([]json.RawMessage, error) {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, b, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	var msg []json.RawMessage
	if err := json.Unmarshal(b, &msg); err != nil || len(msg) == 0 {
		return nil, fmt.Errorf("not a WAMP message: %s", Truncate(string(b), 200))
	}
	return msg, nil
}

// ReadUntil reads until a message of type typ arrives, within the time
// given; an ABORT ends the wait.
func (c *Conn) ReadUntil(within time.Duration, typ int) ([]json.RawMessage, error) {
	deadline := time.Now().Add(within)
	want := strconv.Itoa(typ)
	for {
		msg, err := c.Read(time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if string(msg[0]) == want {
			return msg, nil
		}
		if string(msg[0]) == "3" {
			return nil, fmt.Errorf("aborted: %s", Truncate(fmt.Sprint(msg), 200))
		}
	}
}

// Truncate cuts s to n bytes, marking the cut, for messages in errors.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
