package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gammazero/nexus/v3/wamp"

	"github.com/php-wamp-observer/php-wamp-observer/wampcall"
)

// CallSession receives what the observer sees of one WAMP session's calls.
// The router knows nothing of metrics: metrics.Session implements this, and
// so can anything else that wants to watch calls.
type CallSession interface {
	// Call reports a CALL the client sent. timeout is the CALL's own
	// timeout option, or 0 when it has none.
	Call(id uint64, procedure string, timeout time.Duration)
	// Result reports the final RESULT of a call.
	Result(id uint64)
	// Error reports an ERROR answering a call.
	Error(id uint64, errorURI string)
	// Registered reports a procedure the client registered (exact match).
	Registered(procedure string)
	// Unregistered reports that one of those registrations ended.
	Unregistered(procedure string)
	// Close reports that the session ended; its pending calls have no
	// outcome.
	Close()
}

// OpenSessionFunc starts a CallSession when the router welcomes a client.
type OpenSessionFunc func() CallSession

// connObserver watches one WebSocket connection. Its methods run inline in
// the peer's own receive and send goroutines (wsPeer's decode and encode),
// so observing adds no goroutine and no channel hop, and the only locks it
// takes are this connection's.
type connObserver struct {
	open OpenSessionFunc

	// session is nil until the router sends WELCOME, and again after
	// GOODBYE or ABORT. It is written by the send goroutine and read by the
	// receive goroutine.
	session atomic.Pointer[sessionRef]

	// registering maps REGISTER request ids to procedures until the router
	// confirms them with REGISTERED; registrations maps the registration
	// ids REGISTERED gave to procedures, and unregistering UNREGISTER
	// request ids to registration ids, until UNREGISTERED. All bounded in
	// number and, through uriBytes, in bytes. Registrations are rare; a
	// plain mutex is enough.
	mu            sync.Mutex
	registering   map[wamp.ID]wamp.URI
	registrations map[wamp.ID]wamp.URI
	unregistering map[wamp.ID]wamp.ID
	uriBytes      int // of the procedures held in registering and registrations
}

// sessionRef boxes the interface so it can live in an atomic.Pointer.
type sessionRef struct{ CallSession }

func newConnObserver(open OpenSessionFunc) *connObserver {
	return &connObserver{open: open}
}

// fromClient sees each message the client sent, as it is deserialized.
func (o *connObserver) fromClient(msg wamp.Message) {
	switch m := msg.(type) {
	case *wamp.Call:
		if ref := o.session.Load(); ref != nil {
			ref.Call(uint64(m.Request), string(m.Procedure), callTimeout(m.Options))
		}
	case *wamp.Register:
		if o.session.Load() == nil || !exactMatch(m.Options) {
			return
		}
		o.mu.Lock()
		if o.registering == nil {
			o.registering = make(map[wamp.ID]wamp.URI)
		}
		// A client that never sees REGISTERED answered (refused
		// registrations get ERROR) leaves entries behind; bound them, in
		// number and bytes (a registration not remembered only loses its
		// zero-count series and its hold on a slot).
		if old, dup := o.registering[m.Request]; dup { // the latest REGISTER with an id counts
			delete(o.registering, m.Request)
			o.uriBytes -= len(old)
		}
		if len(o.registering) < maxRegistering && o.uriBytes+len(m.Procedure) <= maxRegistrationBytes {
			o.registering[m.Request] = m.Procedure
			o.uriBytes += len(m.Procedure)
		}
		o.mu.Unlock()
	case *wamp.Unregister:
		o.mu.Lock()
		if _, ok := o.registrations[m.Registration]; ok && len(o.unregistering) < maxRegistering {
			if o.unregistering == nil {
				o.unregistering = make(map[wamp.ID]wamp.ID)
			}
			o.unregistering[m.Request] = m.Registration
		}
		o.mu.Unlock()
	case *wamp.Goodbye:
		o.endSession()
	}
}

// maxRegistering bounds the REGISTER requests one connection may have
// awaiting an answer, and its registrations remembered; maxRegistrationBytes
// the bytes of their procedures.
const (
	maxRegistering       = 1024
	maxRegistrationBytes = 64 << 10
)

// toClient sees each message the router sends to the client, as it is
// serialized for the wire.
func (o *connObserver) toClient(msg wamp.Message) {
	switch m := msg.(type) {
	case *wamp.Result:
		if isProgress(m.Details) {
			return // only the final result ends a call
		}
		if ref := o.session.Load(); ref != nil {
			ref.Result(uint64(m.Request))
		}
	case *wamp.Error:
		switch m.Type {
		case wamp.CALL:
			if ref := o.session.Load(); ref != nil {
				ref.Error(uint64(m.Request), string(m.Error))
			}
		case wamp.REGISTER:
			o.mu.Lock()
			if procedure, ok := o.registering[m.Request]; ok {
				delete(o.registering, m.Request)
				o.uriBytes -= len(procedure)
			}
			o.mu.Unlock()
		case wamp.UNREGISTER:
			o.mu.Lock()
			delete(o.unregistering, m.Request)
			o.mu.Unlock()
		}
	case *wamp.Registered:
		o.mu.Lock()
		procedure, ok := o.registering[m.Request]
		delete(o.registering, m.Request)
		if ok {
			// Remembered for UNREGISTERED while the bound allows; reported
			// either way.
			if o.registrations == nil {
				o.registrations = make(map[wamp.ID]wamp.URI)
			}
			if old, dup := o.registrations[m.Registration]; dup {
				o.uriBytes -= len(old)
				delete(o.registrations, m.Registration)
			}
			if len(o.registrations) < maxRegistering {
				o.registrations[m.Registration] = procedure
			} else {
				o.uriBytes -= len(procedure)
			}
		}
		o.mu.Unlock()
		if ref := o.session.Load(); ok && ref != nil {
			ref.Registered(string(procedure))
		}
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
		if ref := o.session.Load(); ok && known && ref != nil {
			ref.Unregistered(string(procedure))
		}
	case *wamp.Welcome:
		o.endSession() // a client may only hold one session at a time
		o.session.Store(&sessionRef{o.open()})
	case *wamp.Goodbye, *wamp.Abort:
		o.endSession()
	}
}

// endSession closes the current session, if any. Safe to call repeatedly
// and from both goroutines.
func (o *connObserver) endSession() {
	if ref := o.session.Swap(nil); ref != nil {
		ref.Close() // which ends its registrations too
		o.mu.Lock()
		for _, procedure := range o.registrations {
			o.uriBytes -= len(procedure)
		}
		clear(o.registrations)
		clear(o.unregistering)
		o.mu.Unlock()
	}
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
