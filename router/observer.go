package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/wampcall"
)

// CallSession receives what the observer sees of one WAMP session's calls,
// on one side: as caller (the CALLs it sends, answered by RESULT or ERROR)
// or as callee (the INVOCATIONs it gets, answered by YIELD or ERROR). The
// router knows nothing of metrics: metrics.Session implements this, and so
// can anything else that wants to watch calls.
type CallSession interface {
	// Call reports a CALL the client sent, or an INVOCATION the router
	// sent it. timeout is the CALL's own timeout option (the timeout
	// forwarded in an INVOCATION), or 0 when it has none.
	Call(id uint64, procedure string, timeout time.Duration)
	// Result reports the final RESULT (or YIELD) of a call.
	Result(id uint64)
	// Error reports an ERROR answering a call.
	Error(id uint64, errorURI string)
	// Interrupt reports an INTERRUPT the router sent for an invocation.
	Interrupt(id uint64)
	// Registered reports a procedure the client registered (exact match).
	Registered(procedure string)
	// Unregistered reports that one of those registrations ended.
	Unregistered(procedure string)
	// Close reports that the session ended; its pending calls have no
	// outcome.
	Close()
}

// SessionObservers observe one session: Calls as caller, Invocations as
// callee (nil: not observed).
type SessionObservers struct {
	Calls, Invocations CallSession
}

// OpenSessionFunc starts the observation of a session the router welcomed
// into realm.
type OpenSessionFunc func(realm string) SessionObservers

// TrafficObserver receives what the router sees in one realm beyond the
// timing of calls. metrics.Traffic implements it (through package app).
// Its methods must be cheap and safe for concurrent use.
type TrafficObserver interface {
	// OpenConn starts counting a connection's messages.
	OpenConn() ConnTraffic
	SessionOpened()
	// SessionClosed reports a session that ended, for one of CloseReasons.
	SessionClosed(reason string)
	// CallRefused reports an ERROR for a CALL that no callee could take,
	// for one of RefusalReasons.
	CallRefused(reason string)
	// Published reports a PUBLISH; Event an EVENT delivered, of topic, or
	// of "" when the topic is not known.
	Published(topic string)
	Event(topic string)
	// Subscribed reports a subscription to topic (a URI or a pattern)
	// until the function it returns is called.
	Subscribed(topic string) (unsubscribed func())
}

// ConnTraffic counts one connection's messages by WAMP message code, with
// their size on the wire. Received is called from one goroutine, Sent from
// another; Close once both are done.
type ConnTraffic interface {
	Received(code uint8, bytes int)
	Sent(code uint8, bytes int)
	Close()
}

// TrafficFunc returns the TrafficObserver of realm; realm is one the
// router serves, or "" for a connection that asked for none of them.
type TrafficFunc func(realm string) TrafficObserver

// Why a session ended, as passed to TrafficObserver.SessionClosed: the
// reason URI of the GOODBYE or ABORT that ended it when it is one of the
// spec's, CloseOther for any other, and
// CloseConnectionLost when the connection ended without either.
const (
	CloseConnectionLost = "connection_lost"
	CloseOther          = "other"
)

// CloseReasons lists every reason a session can end with.
func CloseReasons() []string {
	return []string{string(wamp.CloseNormal), string(wamp.CloseRealm), string(wamp.CloseGoodbyeAndOut),
		string(wamp.CloseSystemShutdown), closeKilled, string(wamp.ErrProtocolViolation),
		CloseConnectionLost, CloseOther}
}

// closeKilled is the GOODBYE reason the WAMP spec gives a session killed
// through the wamp.session.kill meta procedure (nexus sends the reason the
// killer passed, wamp.close.normal when none); optTopic the EVENT detail that names
// the topic of a pattern subscription's event.
const (
	closeKilled = "wamp.close.killed"
	optTopic    = "topic"
)

func closeReason(uri wamp.URI) string {
	for _, r := range CloseReasons()[:6] {
		if string(uri) == r {
			return r
		}
	}
	return CloseOther
}

// Why a call was refused, as passed to TrafficObserver.CallRefused, read
// from the ERROR the caller got: no callee registered the procedure
// (wamp.error.no_such_procedure); the callee's queue was full ("callee
// blocked", from nexus or this front, wamp.error.network_failure); or the
// callee left, or was disconnected as a slow consumer, before it answered
// (wamp.error.canceled, "callee gone").
const (
	RefuseNoCallee      = "no_callee"
	RefuseCalleeBlocked = "callee_blocked"
	RefuseCalleeGone    = "callee_gone"
)

// RefusalReasons lists every refusal reason.
func RefusalReasons() []string {
	return []string{RefuseNoCallee, RefuseCalleeBlocked, RefuseCalleeGone}
}

// The first argument of nexus's ERRORs for a blocked or departed callee.
const (
	calleeBlockedText = "callee blocked - cannot call procedure"
	calleeGoneText    = "callee gone"
)

func refusal(m *wamp.Error) string {
	first := ""
	if len(m.Arguments) > 0 {
		first, _ = m.Arguments[0].(string)
	}
	switch {
	case m.Error == wamp.ErrNoSuchProcedure:
		return RefuseNoCallee
	case m.Error == wamp.ErrNetworkFailure && first == calleeBlockedText:
		return RefuseCalleeBlocked
	case m.Error == wamp.ErrCanceled && first == calleeGoneText:
		return RefuseCalleeGone
	}
	return ""
}

// MessageTypes names the WAMP v2 message types by code, for counting
// traffic.
func MessageTypes() map[uint8]string {
	types := map[uint8]string{}
	for _, t := range []wamp.MessageType{wamp.HELLO, wamp.WELCOME, wamp.ABORT, wamp.CHALLENGE, wamp.AUTHENTICATE,
		wamp.GOODBYE, wamp.ERROR, wamp.PUBLISH, wamp.PUBLISHED, wamp.SUBSCRIBE, wamp.SUBSCRIBED, wamp.UNSUBSCRIBE,
		wamp.UNSUBSCRIBED, wamp.EVENT, wamp.CALL, wamp.CANCEL, wamp.RESULT, wamp.REGISTER, wamp.REGISTERED,
		wamp.UNREGISTER, wamp.UNREGISTERED, wamp.INVOCATION, wamp.INTERRUPT, wamp.YIELD} {
		types[uint8(t)] = t.String()
	}
	return types
}

// connObserver watches one WebSocket connection. Its methods run inline in
// the peer's own receive and send goroutines (wsPeer's decode and encode),
// so observing adds no goroutine and no channel hop, and the only locks it
// takes are this connection's.
type connObserver struct {
	open    OpenSessionFunc
	traffic TrafficFunc // nil: no traffic observed

	// realm is the one the client's HELLO named; realmTraffic its
	// observer, conn the connection's counts, both set at the first
	// message (read by the send goroutine only after WELCOME, which
	// follows the HELLO).
	realm        atomic.Pointer[string]
	realmTraffic atomic.Pointer[trafficRef]
	conn         atomic.Pointer[connTrafficRef]

	// session is nil until the router sends WELCOME, and again after
	// GOODBYE or ABORT. It is written by the send goroutine and read by the
	// receive goroutine.
	session atomic.Pointer[SessionObservers]

	// What is needed to tell a message's procedure or topic: REGISTER and
	// SUBSCRIBE request ids until REGISTERED or SUBSCRIBED, the ids those
	// gave, and UNREGISTER and UNSUBSCRIBE request ids until answered. All
	// bounded in number and, through uriBytes, in bytes. They are rare; a
	// plain mutex is enough.
	mu            sync.Mutex
	registering   map[wamp.ID]wamp.URI
	registrations map[wamp.ID]wamp.URI
	unregistering map[wamp.ID]wamp.ID
	subscribing   map[wamp.ID]wamp.URI
	subscriptions map[wamp.ID]subscription
	unsubscribing map[wamp.ID]wamp.ID
	uriBytes      int // of the URIs held in all of them
}

type trafficRef struct{ TrafficObserver }
type connTrafficRef struct{ ConnTraffic }

type subscription struct {
	topic        wamp.URI
	unsubscribed func()
}

func newConnObserver(open OpenSessionFunc, traffic TrafficFunc) *connObserver {
	return &connObserver{open: open, traffic: traffic}
}

// maxRegistering bounds each of the maps above; maxRegistrationBytes the
// bytes of the URIs they hold together.
const (
	maxRegistering       = 1024
	maxRegistrationBytes = 64 << 10
)

// received counts a message of n bytes from the client, before the guard
// judges it. The first message names the connection's realm when it is a
// HELLO.
func (o *connObserver) received(msg wamp.Message, n int) {
	if o.traffic == nil {
		return
	}
	ref := o.conn.Load()
	if ref == nil {
		realm := ""
		if h, ok := msg.(*wamp.Hello); ok {
			realm = string(h.Realm)
		}
		o.bindRealm(realm)
		ref = o.conn.Load()
	}
	ref.Received(uint8(msg.MessageType()), n)
}

// bindRealm sets the connection's traffic observer, once.
func (o *connObserver) bindRealm(realm string) {
	t := o.traffic(realm)
	if o.realmTraffic.CompareAndSwap(nil, &trafficRef{t}) {
		o.conn.Store(&connTrafficRef{t.OpenConn()})
	}
}

// sent counts a message of n bytes to the client.
func (o *connObserver) sent(msg wamp.Message, n int) {
	if ref := o.conn.Load(); ref != nil {
		ref.Sent(uint8(msg.MessageType()), n)
	}
}

// realmObserver is the connection's traffic observer, or nil.
func (o *connObserver) realmObserver() TrafficObserver {
	if ref := o.realmTraffic.Load(); ref != nil {
		return ref.TrafficObserver
	}
	return nil
}

// closeTraffic ends the connection's counts; the peer calls it when its
// goroutines are done.
func (o *connObserver) closeTraffic() {
	if ref := o.conn.Load(); ref != nil {
		ref.Close()
	}
}

// fromClient sees each message the client sent, as it is deserialized.
func (o *connObserver) fromClient(msg wamp.Message) {
	switch m := msg.(type) {
	case *wamp.Call:
		if s := o.session.Load(); s != nil {
			s.Calls.Call(uint64(m.Request), string(m.Procedure), callTimeout(m.Options))
		}
	case *wamp.Yield:
		if s := o.session.Load(); s != nil && s.Invocations != nil && !isProgress(m.Options) {
			s.Invocations.Result(uint64(m.Request))
		}
	case *wamp.Error:
		if s := o.session.Load(); s != nil && s.Invocations != nil && m.Type == wamp.INVOCATION {
			s.Invocations.Error(uint64(m.Request), string(m.Error))
		}
	case *wamp.Publish:
		if t := o.realmObserver(); t != nil && o.session.Load() != nil {
			t.Published(string(m.Topic))
		}
	case *wamp.Register:
		if o.session.Load() == nil || !exactMatch(m.Options) {
			return
		}
		o.mu.Lock()
		o.registering = o.remember(o.registering, m.Request, m.Procedure)
		o.mu.Unlock()
	case *wamp.Subscribe:
		if o.session.Load() == nil || o.traffic == nil {
			return
		}
		o.mu.Lock()
		o.subscribing = o.remember(o.subscribing, m.Request, m.Topic)
		o.mu.Unlock()
	case *wamp.Unregister:
		o.mu.Lock()
		if _, ok := o.registrations[m.Registration]; ok {
			o.unregistering = awaitAnswer(o.unregistering, m.Request, m.Registration)
		}
		o.mu.Unlock()
	case *wamp.Unsubscribe:
		o.mu.Lock()
		if _, ok := o.subscriptions[m.Subscription]; ok {
			o.unsubscribing = awaitAnswer(o.unsubscribing, m.Request, m.Subscription)
		}
		o.mu.Unlock()
	case *wamp.Hello:
		o.setRealm(m.Realm)
	case *wamp.Goodbye:
		o.endSession(closeReason(m.Reason))
	}
}

// remember holds uri for request id in pending (a REGISTER or SUBSCRIBE
// awaiting its answer) within the bounds, and returns the map. A client
// that never sees its requests answered (refused ones get ERROR) leaves
// entries behind; one not remembered only loses what the answer would
// have reported. The latest request with an id counts. o.mu is held.
func (o *connObserver) remember(pending map[wamp.ID]wamp.URI, id wamp.ID, uri wamp.URI) map[wamp.ID]wamp.URI {
	if pending == nil {
		pending = make(map[wamp.ID]wamp.URI)
	}
	if old, dup := pending[id]; dup {
		delete(pending, id)
		o.uriBytes -= len(old)
	}
	if len(pending) < maxRegistering && o.uriBytes+len(uri) <= maxRegistrationBytes {
		pending[id] = uri
		o.uriBytes += len(uri)
	}
	return pending
}

// awaitAnswer holds the registration or subscription id an UNREGISTER or
// UNSUBSCRIBE request ends until its answer, within the bound, and returns
// the map. o.mu is held.
func awaitAnswer(pending map[wamp.ID]wamp.ID, request, id wamp.ID) map[wamp.ID]wamp.ID {
	if len(pending) >= maxRegistering {
		return pending
	}
	if pending == nil {
		pending = make(map[wamp.ID]wamp.ID)
	}
	pending[request] = id
	return pending
}

// forget drops request id from pending. o.mu is held.
func (o *connObserver) forget(pending map[wamp.ID]wamp.URI, id wamp.ID) (wamp.URI, bool) {
	uri, ok := pending[id]
	if ok {
		delete(pending, id)
		o.uriBytes -= len(uri)
	}
	return uri, ok
}

// toClient sees each message the router sends to the client, as it is
// serialized for the wire.
func (o *connObserver) toClient(msg wamp.Message) {
	switch m := msg.(type) {
	case *wamp.Result:
		if isProgress(m.Details) {
			return // only the final result ends a call
		}
		if s := o.session.Load(); s != nil {
			s.Calls.Result(uint64(m.Request))
		}
	case *wamp.Invocation:
		o.invocation(m)
	case *wamp.Interrupt:
		o.interrupt(m)
	case *wamp.Event:
		o.event(m)
	case *wamp.Error:
		o.errorToClient(m)
	case *wamp.Registered:
		o.registered(m)
	case *wamp.Unregistered:
		o.mu.Lock()
		registration, ok := o.unregistering[m.Request]
		delete(o.unregistering, m.Request)
		procedure, known := o.registrations[registration]
		if ok && known {
			delete(o.registrations, registration)
			o.uriBytes -= len(procedure)
		}
		o.mu.Unlock()
		if s := o.session.Load(); ok && known && s != nil {
			s.Calls.Unregistered(string(procedure))
			if s.Invocations != nil {
				s.Invocations.Unregistered(string(procedure))
			}
		}
	case *wamp.Subscribed:
		o.subscribed(m)
	case *wamp.Unsubscribed:
		o.mu.Lock()
		id, ok := o.unsubscribing[m.Request]
		delete(o.unsubscribing, m.Request)
		sub, known := o.subscriptions[id]
		if ok && known {
			delete(o.subscriptions, id)
			o.uriBytes -= len(sub.topic)
		}
		o.mu.Unlock()
		if ok && known && sub.unsubscribed != nil {
			sub.unsubscribed()
		}
	case *wamp.Welcome:
		o.endSession(CloseOther) // a client may only hold one session at a time
		realm := ""
		if r := o.realm.Load(); r != nil {
			realm = *r
		}
		s := o.open(realm)
		o.session.Store(&s)
		if t := o.realmObserver(); t != nil {
			t.SessionOpened()
		}
	case *wamp.Goodbye:
		o.endSession(closeReason(m.Reason))
	case *wamp.Abort:
		o.endSession(closeReason(m.Reason))
	}
}

// setRealm notes the realm a HELLO asked for: the session the WELCOME
// opens is in it.
func (o *connObserver) setRealm(realm wamp.URI) {
	r := string(realm)
	o.realm.Store(&r)
}

func (o *connObserver) invocation(m *wamp.Invocation) {
	s := o.session.Load()
	if s == nil || s.Invocations == nil {
		return
	}
	procedure, _ := wamp.AsString(m.Details[wamp.OptProcedure]) // pattern registrations
	if procedure == "" {
		o.mu.Lock()
		uri, ok := o.registrations[m.Registration]
		o.mu.Unlock()
		if !ok {
			return // beyond what the bounds let the observer remember
		}
		procedure = string(uri)
	}
	s.Invocations.Call(uint64(m.Request), procedure, callTimeout(m.Details))
}

// interrupt counts an INTERRUPT. With mode "kill" the dealer waits for the
// callee's ERROR, which ends the invocation; otherwise the dealer has
// answered the caller already and ignores whatever the callee sends, so
// the INTERRUPT ends it, with the reason the caller got (as the log path
// ends a callee's view of the call).
func (o *connObserver) interrupt(m *wamp.Interrupt) {
	s := o.session.Load()
	if s == nil || s.Invocations == nil {
		return
	}
	s.Invocations.Interrupt(uint64(m.Request))
	if mode, _ := wamp.AsString(m.Options[wamp.OptMode]); mode == wamp.CancelModeKill {
		return
	}
	reason, _ := wamp.AsString(m.Options[wamp.OptReason])
	if reason == "" {
		reason = string(wamp.ErrCanceled)
	}
	s.Invocations.Error(uint64(m.Request), reason)
}

func (o *connObserver) event(m *wamp.Event) {
	t := o.realmObserver()
	if t == nil {
		return
	}
	topic, _ := wamp.AsString(m.Details[optTopic]) // pattern subscriptions
	if topic == "" {
		o.mu.Lock()
		topic = string(o.subscriptions[m.Subscription].topic)
		o.mu.Unlock()
	}
	t.Event(topic)
}

func (o *connObserver) errorToClient(m *wamp.Error) {
	switch m.Type {
	case wamp.CALL:
		if t := o.realmObserver(); t != nil {
			if reason := refusal(m); reason != "" {
				t.CallRefused(reason)
			}
		}
		if s := o.session.Load(); s != nil {
			s.Calls.Error(uint64(m.Request), string(m.Error))
		}
	case wamp.REGISTER:
		o.mu.Lock()
		o.forget(o.registering, m.Request)
		o.mu.Unlock()
	case wamp.SUBSCRIBE:
		o.mu.Lock()
		o.forget(o.subscribing, m.Request)
		o.mu.Unlock()
	case wamp.UNREGISTER:
		o.mu.Lock()
		delete(o.unregistering, m.Request)
		o.mu.Unlock()
	case wamp.UNSUBSCRIBE:
		o.mu.Lock()
		delete(o.unsubscribing, m.Request)
		o.mu.Unlock()
	}
}

func (o *connObserver) registered(m *wamp.Registered) {
	o.mu.Lock()
	procedure, ok := o.forget(o.registering, m.Request)
	if ok {
		// Remembered for UNREGISTERED and INVOCATIONs while the bound
		// allows; reported either way.
		if o.registrations == nil {
			o.registrations = make(map[wamp.ID]wamp.URI)
		}
		if old, dup := o.registrations[m.Registration]; dup {
			o.uriBytes -= len(old)
			delete(o.registrations, m.Registration)
		}
		if len(o.registrations) < maxRegistering {
			o.registrations[m.Registration] = procedure
			o.uriBytes += len(procedure)
		}
	}
	o.mu.Unlock()
	if s := o.session.Load(); ok && s != nil {
		s.Calls.Registered(string(procedure))
		if s.Invocations != nil {
			s.Invocations.Registered(string(procedure))
		}
	}
}

func (o *connObserver) subscribed(m *wamp.Subscribed) {
	t := o.realmObserver()
	o.mu.Lock()
	defer o.mu.Unlock()
	topic, ok := o.forget(o.subscribing, m.Request)
	if !ok || t == nil || o.session.Load() == nil {
		return
	}
	if _, dup := o.subscriptions[m.Subscription]; dup {
		return // subscribing again to a topic is the same subscription
	}
	if len(o.subscriptions) >= maxRegistering {
		return
	}
	if o.subscriptions == nil {
		o.subscriptions = make(map[wamp.ID]subscription)
	}
	o.subscriptions[m.Subscription] = subscription{topic: topic, unsubscribed: t.Subscribed(string(topic))}
	o.uriBytes += len(topic)
}

// endSession closes the current session, if any, which ended for reason
// (one of CloseReasons). Safe to call repeatedly and from both goroutines.
func (o *connObserver) endSession(reason string) {
	s := o.session.Swap(nil)
	if s == nil {
		return
	}
	s.Calls.Close() // which ends its registrations too
	if s.Invocations != nil {
		s.Invocations.Close()
	}
	if t := o.realmObserver(); t != nil {
		t.SessionClosed(reason)
	}
	o.mu.Lock()
	for _, procedure := range o.registrations {
		o.uriBytes -= len(procedure)
	}
	// The subscriptions end, but their topics stay known: EVENTs nexus
	// queued before the session ended still reach the client.
	for id, sub := range o.subscriptions {
		if sub.unsubscribed != nil {
			sub.unsubscribed()
			o.subscriptions[id] = subscription{topic: sub.topic}
		}
	}
	clear(o.registrations)
	clear(o.unregistering)
	clear(o.unsubscribing)
	o.mu.Unlock()
}

// callTimeout reads the CALL timeout option as nexus's dealer does
// (wamp.AsInt64: serializers decode numbers as different Go types), so
// that the tracker's deadline agrees with what the dealer enforces, and
// interprets it by the rule the log parser shares.
func callTimeout(options wamp.Dict) time.Duration {
	ms, _ := wamp.AsInt64(options[wamp.OptTimeout])
	return wampcall.Timeout(ms)
}

func isProgress(details wamp.Dict) bool { return wampcall.Progressive(details[wamp.OptProgress]) }

// exactMatch tells whether a REGISTER names one procedure rather than a
// prefix or wildcard pattern, which would not be a procedure URI.
func exactMatch(options wamp.Dict) bool {
	policy, _ := wamp.AsString(options[wamp.OptMatch])
	return wampcall.ExactMatch(policy)
}
