package router

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gammazero/nexus/v3/wamp"
)

// DefaultMaxCallsInFlight bounds the calls one session may have sent and not
// yet seen answered. nexus holds every unanswered call (and a goroutine per
// call with a timeout option) without limit; 1000 is ten times what our
// busiest PHP workers keep outstanding, and costs nexus about 1 MB.
const DefaultMaxCallsInFlight = 1000

// DefaultMaxTestaments bounds the testaments (wamp.session.add_testament)
// one session may hold per scope, and DefaultMaxTestamentBytes the bytes of
// the CALL messages that added them: nexus stores them without limit until
// the session leaves. A client needs one or two.
const (
	DefaultMaxTestaments     = 16
	DefaultMaxTestamentBytes = 64 << 10
)

// MaxRegistrations and MaxSubscriptions bound what one session may ask
// nexus to keep (counted from REGISTER or SUBSCRIBE until UNREGISTERED or
// UNSUBSCRIBED), and MaxURILen the URI of each: nexus stores them without
// limit, so 1,000 REGISTERs of 1 MiB URIs held 1 GiB. A PHP worker
// registers a few dozen procedures.
const (
	MaxRegistrations = 1000
	MaxSubscriptions = 1000
	MaxURILen        = 4096
)

// DefaultMaxCallsInFlightTotal and DefaultMaxHeldURIBytesTotal bound the
// same over all sessions: per-session bounds alone let -max-conns sessions
// hold -max-conns times as much (4,096 × 1,000 calls; 4,096 × 2,000 URIs
// of 4 KiB, 32 GiB).
const (
	DefaultMaxCallsInFlightTotal = 100_000
	DefaultMaxHeldURIBytesTotal  = 64 << 20
)

// guardTotals are what every session's guard holds together.
type guardTotals struct {
	maxCalls, maxURIBytes int64
	calls, uriBytes       atomic.Int64
}

// ErrLimitExceeded answers a CALL the front refuses because the session is
// over one of its per-session limits (calls in flight, testaments). The WAMP
// spec defines no URI for this and reserves the wamp. prefix, hence ours.
const ErrLimitExceeded = wamp.URI("wamp_observer.error.limit_exceeded")

// pptOptions are the Payload PassThru options nexus v3.3.0 converts to
// strings with unchecked type assertions (router/helpers.go and
// router/dealer.go), in its dealer and broker goroutines: a non-string value
// in a CALL, YIELD or PUBLISH panics the whole process.
var pptOptions = [...]string{wamp.OptPPTScheme, wamp.OptPPTSerializer, wamp.OptPPTCipher, wamp.OptPPTKeyId}

// guard is the part of the front that refuses, per connection, what nexus
// cannot digest or must not be allowed to pile up. It sees each message from
// the client before nexus does (inbound, in the receive goroutine) and each
// message to the client (outbound, in the encoder goroutine).
type guard struct {
	maxInFlight       int
	maxTestaments     int
	maxTestamentBytes int

	mu sync.Mutex
	// inFlight holds the request ids of the session's CALLs that got no
	// final RESULT or ERROR yet; at most maxInFlight of them.
	inFlight map[wamp.ID]struct{}
	// testaments and testamentBytes count, per scope, what the session
	// asked nexus to store. Counted when asked: a refused add_testament
	// still counts, erring on the safe side.
	testaments     map[string]int
	testamentBytes map[string]int
	// registrations and subscriptions are what the session holds in
	// nexus, asked for or granted (see holdings).
	registrations, subscriptions holdings
	totals                       *guardTotals // shared by the router's sessions
}

// holdings counts a session's registrations (or subscriptions): requests
// awaiting their answer, ids granted, and UNREGISTER requests awaiting
// theirs, each bounded by the limit.
type holdings struct {
	asked    map[wamp.ID]int     // REGISTER request id → URI bytes
	granted  map[wamp.ID]int     // registration id → URI bytes
	dropping map[wamp.ID]wamp.ID // UNREGISTER request id → registration id
}

func newHoldings() holdings {
	return holdings{asked: map[wamp.ID]int{}, granted: map[wamp.ID]int{}, dropping: map[wamp.ID]wamp.ID{}}
}

func (h *holdings) held() int { return len(h.asked) + len(h.granted) }

// clear forgets everything and returns the URI bytes that were held.
func (h *holdings) clear() int {
	n := 0
	for _, b := range h.asked {
		n += b
	}
	for _, b := range h.granted {
		n += b
	}
	clear(h.asked)
	clear(h.granted)
	clear(h.dropping)
	return n
}

func newGuard(maxInFlight, maxTestaments, maxTestamentBytes int) *guard {
	return &guard{
		maxInFlight: maxInFlight, maxTestaments: maxTestaments, maxTestamentBytes: maxTestamentBytes,
		inFlight: map[wamp.ID]struct{}{}, testaments: map[string]int{}, testamentBytes: map[string]int{},
		registrations: newHoldings(), subscriptions: newHoldings(),
		totals: &guardTotals{maxCalls: DefaultMaxCallsInFlightTotal, maxURIBytes: DefaultMaxHeldURIBytesTotal},
	}
}

// sharing makes g count against totals shared with other sessions.
func (g *guard) sharing(totals *guardTotals) *guard {
	g.totals = totals
	return g
}

// verdict is what the front does with a message from the client.
type verdict struct {
	// reply answers a refused message instead of passing it to nexus: an
	// ERROR, or an ABORT after which the connection is closed. Nil when
	// the refused message gets no answer.
	reply wamp.Message
	// reason counts the refusal (a Reject constant); empty when passed.
	reason string
}

func (v verdict) passed() bool { return v.reason == "" }

var pass = verdict{}

// inbound decides on one message from the client. size is its length on the
// wire, the measure of what nexus will hold of it.
func (g *guard) inbound(msg wamp.Message, size int) verdict {
	switch m := msg.(type) {
	case *wamp.Call:
		v := g.admitCall(m, size)
		if !v.passed() && g.inFlightNow(m.Request) {
			// Our ERROR for this CALL would end the call in flight with
			// the same id, in our counts and the caller's eyes: a
			// client that reuses the id of a pending call for a CALL we
			// refuse is aborted instead.
			return abortWith(v.reason, "a refused CALL reused the id of a call in flight")
		}
		return v
	case *wamp.Yield:
		if bad := badPPTOption(m.Options); bad != "" {
			return abortWith(RejectInvalidOption, bad+" of a YIELD must be a string")
		}
	case *wamp.Register:
		return g.ask(&g.registrations, wamp.REGISTER, m.Request, string(m.Procedure), MaxRegistrations, RejectRegistrations, "registrations")
	case *wamp.Subscribe:
		return g.ask(&g.subscriptions, wamp.SUBSCRIBE, m.Request, string(m.Topic), MaxSubscriptions, RejectSubscriptions, "subscriptions")
	case *wamp.Unregister:
		g.drop(&g.registrations, m.Request, m.Registration)
	case *wamp.Unsubscribe:
		g.drop(&g.subscriptions, m.Request, m.Subscription)
	case *wamp.Publish:
		if bad := badPPTOption(m.Options); bad != "" {
			// Like nexus for an invalid topic: an ERROR only when the
			// publisher asked for an acknowledgement.
			v := verdict{reason: RejectInvalidOption}
			if ack, _ := m.Options[wamp.OptAcknowledge].(bool); ack {
				v.reply = &wamp.Error{Type: wamp.PUBLISH, Request: m.Request, Details: wamp.Dict{},
					Error: wamp.ErrInvalidArgument, Arguments: wamp.List{bad + " must be a string"}}
			}
			return v
		}
	}
	return pass
}

// admitCall decides on a CALL: its options, the meta procedures that
// make nexus store something, and the bounds on calls in flight.
func (g *guard) admitCall(m *wamp.Call, size int) verdict {
	if bad := badPPTOption(m.Options); bad != "" {
		return refuseCall(m, RejectInvalidOption, wamp.ErrInvalidArgument, bad+" must be a string")
	}
	switch m.Procedure {
	case wamp.MetaProcSessionAddTestament:
		if v := g.addTestament(m, size); !v.passed() {
			return v
		}
	case wamp.MetaProcSessionFlushTestaments:
		g.flushTestaments(m)
	}
	return g.startCall(m)
}

func (g *guard) inFlightNow(id wamp.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.inFlight[id]
	return ok
}

// ask admits a REGISTER or SUBSCRIBE (of type typ) unless its URI is too
// long (the spec's wamp.error.invalid_uri) or the session holds max already.
func (g *guard) ask(h *holdings, typ wamp.MessageType, request wamp.ID, uri string, max int, reason, what string) verdict {
	if len(uri) > MaxURILen {
		return refuseRequest(typ, request, RejectURITooLong, wamp.ErrInvalidURI, fmt.Sprintf("URI longer than %d bytes", MaxURILen))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := h.asked[request]; dup {
		return pass // nexus answers the client's mistake
	}
	if h.held() >= max {
		return refuseRequest(typ, request, reason, ErrLimitExceeded, fmt.Sprintf("a session may hold %d %s", max, what))
	}
	if n := int64(len(uri)); g.totals.uriBytes.Add(n) > g.totals.maxURIBytes {
		g.totals.uriBytes.Add(-n)
		return refuseRequest(typ, request, reason, ErrLimitExceeded, "the router holds all the "+what+" it may")
	}
	h.asked[request] = len(uri)
	return pass
}

// drop notes an UNREGISTER or UNSUBSCRIBE of id, granted when answered.
func (g *guard) drop(h *holdings, request, id wamp.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := h.granted[id]; ok && len(h.dropping) < MaxRegistrations+MaxSubscriptions {
		h.dropping[request] = id
	}
}

// startCall admits a CALL unless the session has too many in flight.
func (g *guard) startCall(m *wamp.Call) verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.inFlight[m.Request]; dup {
		return pass // a progressive call's continuation
	}
	if len(g.inFlight) >= g.maxInFlight {
		return refuseCall(m, RejectCallsInFlight, ErrLimitExceeded,
			fmt.Sprintf("more than %d calls of this session in flight", g.maxInFlight))
	}
	if g.totals.calls.Add(1) > g.totals.maxCalls {
		g.totals.calls.Add(-1)
		return refuseCall(m, RejectCallsInFlight, ErrLimitExceeded, "the router has all the calls in flight it may")
	}
	g.inFlight[m.Request] = struct{}{}
	return pass
}

func (g *guard) addTestament(m *wamp.Call, size int) verdict {
	// nexus publishes a testament as its meta session, which announces no
	// features: a Payload PassThru option in it makes nexus ABORT and close
	// its own meta session, breaking the meta API for the whole realm.
	if opts, ok := wamp.AsDict(m.ArgumentsKw["publish_options"]); ok {
		for _, k := range pptOptions {
			if _, has := opts[k]; has {
				return refuseCall(m, RejectInvalidOption, wamp.ErrInvalidArgument,
					"testaments cannot use Payload PassThru Mode ("+k+")")
			}
		}
	}
	scope := testamentScope(m)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.testaments[scope] >= g.maxTestaments || g.testamentBytes[scope]+size > g.maxTestamentBytes {
		return refuseCall(m, RejectTestament, ErrLimitExceeded,
			fmt.Sprintf("a session may hold %d testaments of %d bytes in all per scope", g.maxTestaments, g.maxTestamentBytes))
	}
	g.testaments[scope]++
	g.testamentBytes[scope] += size
	return pass
}

func (g *guard) flushTestaments(m *wamp.Call) {
	scope := testamentScope(m)
	g.mu.Lock()
	delete(g.testaments, scope)
	delete(g.testamentBytes, scope)
	g.mu.Unlock()
}

// testamentScope reads the scope as nexus does: "destroyed" unless given.
func testamentScope(m *wamp.Call) string {
	if s, ok := wamp.AsString(m.ArgumentsKw["scope"]); ok && s != "" {
		return s
	}
	return "destroyed"
}

// outbound sees each message to the client: final answers end calls, and a
// new or ended session starts from nothing.
func (g *guard) outbound(msg wamp.Message) {
	switch m := msg.(type) {
	case *wamp.Result:
		if isProgress(m.Details) {
			return
		}
		g.endCall(m.Request)
	case *wamp.Error:
		g.mu.Lock()
		switch m.Type {
		case wamp.CALL:
			g.endCallLocked(m.Request)
		case wamp.REGISTER:
			g.unask(&g.registrations, m.Request)
		case wamp.SUBSCRIBE:
			g.unask(&g.subscriptions, m.Request)
		case wamp.UNREGISTER:
			delete(g.registrations.dropping, m.Request)
		case wamp.UNSUBSCRIBE:
			delete(g.subscriptions.dropping, m.Request)
		}
		g.mu.Unlock()
	case *wamp.Registered:
		g.granted(&g.registrations, m.Request, m.Registration)
	case *wamp.Subscribed:
		g.granted(&g.subscriptions, m.Request, m.Subscription)
	case *wamp.Unregistered:
		g.dropped(&g.registrations, m.Request)
	case *wamp.Unsubscribed:
		g.dropped(&g.subscriptions, m.Request)
	case *wamp.Welcome, *wamp.Goodbye, *wamp.Abort:
		g.reset()
	}
}

func (g *guard) granted(h *holdings, request, id wamp.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n, ok := h.asked[request]; ok {
		delete(h.asked, request)
		if old, dup := h.granted[id]; dup { // nexus reuses an id: the bytes once
			g.totals.uriBytes.Add(-int64(old))
		}
		h.granted[id] = n
	}
}

func (g *guard) dropped(h *holdings, request wamp.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if id, ok := h.dropping[request]; ok {
		delete(h.dropping, request)
		g.totals.uriBytes.Add(-int64(h.granted[id]))
		delete(h.granted, id)
	}
}

// unask forgets a refused REGISTER or SUBSCRIBE; g.mu is held.
func (g *guard) unask(h *holdings, request wamp.ID) {
	if n, ok := h.asked[request]; ok {
		delete(h.asked, request)
		g.totals.uriBytes.Add(-int64(n))
	}
}

func (g *guard) endCall(id wamp.ID) {
	g.mu.Lock()
	g.endCallLocked(id)
	g.mu.Unlock()
}

func (g *guard) endCallLocked(id wamp.ID) {
	if _, ok := g.inFlight[id]; ok {
		delete(g.inFlight, id)
		g.totals.calls.Add(-1)
	}
}

func (g *guard) reset() {
	g.mu.Lock()
	clear(g.testaments)
	clear(g.testamentBytes)
	g.totals.calls.Add(-int64(len(g.inFlight)))
	clear(g.inFlight)
	g.totals.uriBytes.Add(-int64(g.registrations.clear() + g.subscriptions.clear()))
	g.mu.Unlock()
}

// badPPTOption names the first Payload PassThru option that is not a
// string, or returns "".
func badPPTOption(options wamp.Dict) string {
	for _, k := range pptOptions {
		if v, ok := options[k]; ok {
			if _, isString := v.(string); !isString {
				return k
			}
		}
	}
	return ""
}

func refuseRequest(typ wamp.MessageType, request wamp.ID, reason string, uri wamp.URI, why string) verdict {
	return verdict{reason: reason, reply: &wamp.Error{
		Type: typ, Request: request, Details: wamp.Dict{}, Error: uri, Arguments: wamp.List{why},
	}}
}

func refuseCall(m *wamp.Call, reason string, uri wamp.URI, why string) verdict {
	return verdict{reason: reason, reply: &wamp.Error{
		Type: wamp.CALL, Request: m.Request, Details: wamp.Dict{}, Error: uri, Arguments: wamp.List{why},
	}}
}

func abortWith(reason, why string) verdict {
	return verdict{reason: reason, reply: &wamp.Abort{
		Reason: wamp.ErrProtocolViolation, Details: wamp.Dict{wamp.OptMessage: why},
	}}
}
