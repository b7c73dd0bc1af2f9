package wamplog

import (
	"bytes"
	"hash/maphash"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/php-wamp-observer/php-wamp-observer/wampcall"
)

// A log line is what WampObserver::log($protocol, $direction, $message)
// sends: the JSON array ["wamp","out","<the WAMP message as JSON text>"],
// one per line. The oldest installs of the original class sent
// "wamp:out:<message>" instead; both are read.

// Bad-line reasons, the values of the reason label. A fixed list: label
// values never come from the input.
const (
	ReasonNotJSON         = "not_json"             // not a JSON array of three strings and an optional time (nor protocol:direction:message)
	ReasonBadName         = "bad_name"             // protocol or direction not [a-z][a-z0-9]*, at most 32 bytes
	ReasonBadMessage      = "bad_message"          // the WAMP message is not a JSON array with a type code
	ReasonUnknownType     = "unknown_message_type" // a type code WAMP v1 and v2 do not have
	ReasonWrongArity      = "wrong_arity"          // too few elements for its type
	ReasonWrongType       = "wrong_type"           // an element of the wrong JSON type
	ReasonBadID           = "bad_id"               // an id that is not a non-negative integer (v2) or a non-empty string (v1)
	ReasonBadTime         = "bad_time"             // a fourth element that is not an integer from 0 to MaxInt64 (the sender's clock, ns)
	ReasonInvalidUTF8     = "invalid_utf8"         // a procedure or error URI that is not UTF-8
	ReasonTooLong         = "too_long"             // over the maximum line length
	ReasonTooManyFamilies = "too_many_families"    // a new protocol/direction pair beyond the bound
	ReasonFamilyConflict  = "family_conflict"      // its metric names are taken (e.g. wamp/router)
	ReasonLintName        = "lint_name"            // its metric names fail Prometheus's linter (e.g. php/ms: an abbreviated unit)
	ReasonNoProcedure     = "no_procedure"         // an INVOCATION whose procedure is not known
	ReasonEmpty           = "empty"                // a datagram without a line in it
)

// BadLineReasons lists every reason, so their series can start at zero.
func BadLineReasons() []string {
	return []string{ReasonNotJSON, ReasonBadName, ReasonBadMessage, ReasonUnknownType, ReasonWrongArity,
		ReasonWrongType, ReasonBadID, ReasonBadTime, ReasonInvalidUTF8, ReasonTooLong, ReasonTooManyFamilies,
		ReasonFamilyConflict, ReasonLintName, ReasonNoProcedure, ReasonEmpty}
}

// msgKind is what a logged WAMP message means for call tracking.
type msgKind uint8

const (
	kindIgnored    msgKind = iota // valid, but not part of a call (HELLO, EVENT, ...)
	kindCall                      // v2 CALL, v1 CALL
	kindResult                    // final v2 RESULT, v1 CALLRESULT
	kindError                     // v2 ERROR for a CALL or INVOCATION, v1 CALLERROR
	kindInvocation                // v2 INVOCATION
	kindYield                     // final v2 YIELD
	kindInterrupt                 // v2 INTERRUPT
	kindRegister                  // v2 REGISTER
	kindRegistered                // v2 REGISTERED
)

// view tells whose calls a message belongs to: a caller's (CALL, RESULT)
// or a callee's (INVOCATION, YIELD). Their request ids are separate spaces,
// so one process's two views are tracked apart.
type view uint8

const (
	callerView view = iota
	calleeView
)

// logLine is one parsed line. Byte slices point into the line or the
// parser's buffers and are valid until the next parse.
type logLine struct {
	protocol, direction []byte

	// sent is the sender's monotonic clock when it logged the line, in
	// nanoseconds (PHP's hrtime(true)), when hasSent: our class batches
	// lines, so arrival no longer tells when a line was logged.
	sent    int64
	hasSent bool

	kind         msgKind
	view         view
	id           uint64 // request id; v1 string ids hashed, top bit set
	procedure    []byte // CALL, REGISTER, INVOCATION (details.procedure)
	timeout      time.Duration
	errorURI     []byte // ERROR; INTERRUPT's reason; MissingErrorURI
	registration uint64 // INVOCATION, REGISTERED
}

// lineParser parses log lines. It reuses its buffers: not safe for
// concurrent use; each reading goroutine has its own.
type lineParser struct {
	outer, inner jsonScanner
	seed         maphash.Seed
}

func newLineParser() *lineParser { return &lineParser{seed: maphash.MakeSeed()} }

// maxNameLen bounds protocol and direction, which become metric names.
const maxNameLen = 32

// parse reads one line (without its newline). reason is empty on success.
func (p *lineParser) parse(line []byte, out *logLine) (reason string) {
	*out = logLine{}
	line = bytes.TrimSpace(line)
	var msg []byte
	if len(line) > 0 && line[0] == '[' {
		o := &p.outer
		o.reset(line)
		var ok1, ok2, ok3 bool
		o.eat('[')
		out.protocol, ok1 = o.str()
		ok1 = ok1 && o.eat(',')
		out.direction, ok2 = o.str()
		ok2 = ok2 && o.eat(',')
		msg, ok3 = o.str()
		if !ok1 || !ok2 || !ok3 {
			return ReasonNotJSON
		}
		if o.eat(',') {
			o.skipSpace()
			start := o.pos
			v, kind := o.uint()
			if kind == notNumber && !o.skip() || leadingZero(o.b[start:o.pos]) {
				return ReasonNotJSON
			}
			if !o.eat(']') || !o.atEnd() {
				return ReasonNotJSON
			}
			if kind != unsignedInt || v > math.MaxInt64 {
				return ReasonBadTime
			}
			out.sent, out.hasSent = int64(v), true
		} else if !o.eat(']') || !o.atEnd() {
			return ReasonNotJSON
		}
	} else {
		// The original class's first format: protocol:direction:message.
		first := bytes.IndexByte(line, ':')
		if first < 0 {
			return ReasonNotJSON
		}
		second := bytes.IndexByte(line[first+1:], ':')
		if second < 0 {
			return ReasonNotJSON
		}
		out.protocol, out.direction = line[:first], line[first+1:first+1+second]
		msg = line[first+second+2:]
	}
	if !validName(out.protocol) || !validName(out.direction) {
		return ReasonBadName
	}
	return p.parseMessage(msg, out)
}

// leadingZero reports whether tok is a number JSON forbids for its leading
// zero (00, -01), which the scanner's number rule lets through.
func leadingZero(tok []byte) bool {
	tok = bytes.TrimPrefix(tok, []byte{'-'})
	return len(tok) > 1 && tok[0] == '0' && tok[1] >= '0' && tok[1] <= '9'
}

// validName accepts [a-z][a-z0-9]*, which makes a safe metric name part.
func validName(b []byte) bool {
	if len(b) == 0 || len(b) > maxNameLen || b[0] < 'a' || b[0] > 'z' {
		return false
	}
	for _, c := range b[1:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// WAMP message type codes read here.
const (
	v1Call       = 2
	v1CallResult = 3
	v1CallError  = 4

	v2Error      = 8
	v2Call       = 48
	v2Result     = 50
	v2Register   = 64
	v2Registered = 65
	v2Invocation = 68
	v2Interrupt  = 69
	v2Yield      = 70
)

// v2Ignored are the other WAMP v2 message types: valid, not about calls.
func v2Ignored(code uint64) bool {
	switch code {
	case 1, 2, 3, 4, 5, 6, 7, 16, 17, 32, 33, 34, 35, 36, 49, 66, 67:
		return true
	}
	return false
}

func (p *lineParser) parseMessage(msg []byte, out *logLine) string {
	s := &p.inner
	s.reset(msg)
	if !s.eat('[') {
		return ReasonBadMessage
	}
	code, kind := s.uint()
	if kind != unsignedInt {
		return ReasonBadMessage
	}
	if !s.eat(',') {
		if s.peek() == ']' && (v2Ignored(code) || isTracked(code)) {
			return ReasonWrongArity
		}
		return ReasonBadMessage
	}
	// v1 CALL, CALLRESULT and CALLERROR share codes 2..4 with v2 WELCOME,
	// ABORT and CHALLENGE; v1 carries a string call id second, v2 does not.
	if code >= v1Call && code <= v1CallError && s.peek() == '"' {
		return p.parseV1(code, out)
	}
	var reason string
	switch code {
	case v2Call:
		out.kind, out.view = kindCall, callerView
		reason = p.parseV2Call(out)
	case v2Result:
		out.kind, out.view = kindResult, callerView
		reason = p.parseV2Answer(out)
	case v2Yield:
		out.kind, out.view = kindYield, calleeView
		reason = p.parseV2Answer(out)
	case v2Error:
		reason = p.parseV2Error(out)
	case v2Invocation:
		out.kind, out.view = kindInvocation, calleeView
		reason = p.parseV2Invocation(out)
	case v2Interrupt:
		out.kind, out.view = kindInterrupt, calleeView
		reason = p.parseV2Interrupt(out)
	case v2Register:
		out.kind, out.view = kindRegister, calleeView
		reason = p.parseV2Register(out)
	case v2Registered:
		out.kind, out.view = kindRegistered, calleeView
		reason = p.parseV2Registered(out)
	default:
		if v2Ignored(code) {
			return "" // kindIgnored; the rest is not read
		}
		return ReasonUnknownType
	}
	if reason != "" {
		out.kind = kindIgnored
	}
	return reason
}

func isTracked(code uint64) bool {
	switch code {
	case v2Call, v2Result, v2Yield, v2Error, v2Invocation, v2Interrupt, v2Register, v2Registered:
		return true
	}
	return false
}

// v1: [2, callID, procURI, ...] [3, callID, result] [4, callID, errorURI, ...]
func (p *lineParser) parseV1(code uint64, out *logLine) string {
	s := &p.inner
	id, ok := s.str()
	if !ok {
		return ReasonBadMessage
	}
	if len(id) == 0 {
		return ReasonBadID
	}
	// A v1 call id is a string; it shares the uint64 key space with v2
	// ids (at most 2^53) by taking the top bit.
	out.id = maphash.Bytes(p.seed, id) | 1<<63
	switch code {
	case v1Call:
		out.kind = kindCall
		if !s.eat(',') {
			return ReasonWrongArity
		}
		proc, ok := s.str()
		if !ok {
			return ReasonWrongType
		}
		out.procedure = proc
	case v1CallResult:
		out.kind = kindResult
		return ""
	case v1CallError:
		// The original tool counts any type-4 line whose id is a pending
		// call as an error, whatever follows the id: its own writer.php
		// logs [4, id, {"msg": ...}]. A v2 CHALLENGE, [4, "authmethod",
		// {...}], reads the same; it answers no pending call, so ending
		// the call is a no-op for it.
		out.kind = kindError
		out.errorURI = missingErrorURI
		if !s.eat(',') {
			if s.peek() == ']' {
				return "" // [4, id]
			}
			return ReasonWrongArity
		}
		if s.peek() == '"' {
			uri, ok := s.str()
			if !ok {
				return ReasonWrongType
			}
			if utf8.Valid(uri) { // else it is an error without a usable URI
				out.errorURI = uri
			}
		} else if !s.skip() {
			return ReasonWrongType
		}
	}
	return checkUTF8(out)
}

func checkUTF8(out *logLine) string {
	if !utf8.Valid(out.procedure) || !utf8.Valid(out.errorURI) {
		return ReasonInvalidUTF8
	}
	return ""
}

// MissingErrorURI stands for the error URI of an error answer that has
// none, such as the original writer's [4, id, {"msg": ...}]. It has a space,
// so no real URI can be it.
const MissingErrorURI = "(no error URI)"

var missingErrorURI = []byte(MissingErrorURI)

// maxRequestID is the largest WAMP v2 id (2^53).
const maxRequestID = 1 << 53

// id reads a v2 id and the comma after it.
func (p *lineParser) id(out *uint64, last bool) string {
	v, kind := p.inner.uint()
	switch {
	case kind == notNumber:
		if p.inner.skip() {
			return ReasonBadID // a string, object, ... where an id belongs
		}
		return ReasonBadMessage
	case kind == otherNumber || v > maxRequestID:
		return ReasonBadID
	}
	*out = v
	if !last && !p.inner.eat(',') {
		return ReasonWrongArity
	}
	return ""
}

// [48, Request, Options, Procedure, ...]
func (p *lineParser) parseV2Call(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	s := &p.inner
	ok := s.object(func(key []byte) bool {
		if string(key) != "timeout" {
			return s.skip()
		}
		out.timeout = s.timeoutValue()
		return true
	})
	if !ok {
		return ReasonWrongType
	}
	if !s.eat(',') {
		return ReasonWrongArity
	}
	proc, ok := s.str()
	if !ok {
		return ReasonWrongType
	}
	out.procedure = proc
	return checkUTF8(out)
}

// [50, Request, Details, ...] and [70, Request, Options, ...]: progressive
// results and yields do not end a call.
func (p *lineParser) parseV2Answer(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	s := &p.inner
	progress := false
	ok := s.object(func(key []byte) bool {
		if string(key) == "progress" {
			s.skipSpace()
			isTrue := s.literal("true") // a JSON true is the bool true, any other value is not
			progress = wampcall.Progressive(isTrue)
			return isTrue || s.skip()
		}
		return s.skip()
	})
	if !ok {
		return ReasonWrongType
	}
	if progress {
		out.kind = kindIgnored
	}
	return ""
}

// [8, RequestType, Request, Details, Error, ...]
func (p *lineParser) parseV2Error(out *logLine) string {
	var reqType uint64
	if r := p.id(&reqType, false); r != "" {
		return r
	}
	switch reqType {
	case v2Call:
		out.kind, out.view = kindError, callerView
	case v2Invocation:
		out.kind, out.view = kindError, calleeView
	default:
		return "" // an error for a REGISTER, SUBSCRIBE, ...: not a call
	}
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	s := &p.inner
	if !s.skipDetails() {
		return ReasonWrongType
	}
	if !s.eat(',') {
		return ReasonWrongArity
	}
	uri, ok := s.str()
	if !ok {
		return ReasonWrongType
	}
	out.errorURI = uri
	return checkUTF8(out)
}

// timeoutValue reads a timeout option as the router's observer does, by
// the rule they share (wampcall.Timeout) after nexus's conversion of the
// number: a positive number of milliseconds is a timeout, clamped to the
// longest Duration; anything else means none. It is consumed all the same.
func (s *jsonScanner) timeoutValue() time.Duration {
	s.skipSpace()
	start := s.pos
	ms, kind := s.uint()
	switch kind {
	case notNumber:
		s.skip()
		return 0
	case otherNumber:
		// Negative, 1500.0 (msgpack and JavaScript clients send floats),
		// 1e3, or beyond a uint64. The token is a valid number, so the
		// only error is ErrRange, whose ±Inf or 0 reads right.
		f, _ := strconv.ParseFloat(string(s.b[start:s.pos]), 64)
		return wampcall.TimeoutFloat(f)
	}
	// A uint64 beyond an int64 wraps, as in wamp.AsInt64: the dealer
	// then enforces no timeout, and neither does the router's observer.
	return wampcall.Timeout(int64(ms))
}

func (s *jsonScanner) skipDetails() bool {
	return s.peek() == '{' && s.skip()
}

// [68, Request, Registration, Details, ...]
func (p *lineParser) parseV2Invocation(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	if r := p.id(&out.registration, false); r != "" {
		return r
	}
	// details.procedure is there for pattern registrations (and the PHP
	// client adds it to its logged copy); details.timeout when the callee
	// registered with forward_timeout. Otherwise the default deadline holds.
	s := &p.inner
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "procedure":
			if proc, isStr := s.str(); isStr {
				out.procedure = proc
				return true
			}
		case "timeout":
			out.timeout = s.timeoutValue()
			return true
		}
		return s.skip()
	})
	if !ok {
		return ReasonWrongType
	}
	return checkUTF8(out)
}

// [69, Request, Options]: the reason option says whether the dealer gave
// up on a timeout or the caller canceled.
func (p *lineParser) parseV2Interrupt(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	reason, ok := p.inner.stringMember("reason")
	if !ok {
		return ReasonWrongType
	}
	out.errorURI = reason
	return checkUTF8(out)
}

// [64, Request, Options, Procedure]
func (p *lineParser) parseV2Register(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	s := &p.inner
	match, ok := s.stringMember("match")
	if !ok {
		return ReasonWrongType
	}
	exact := wampcall.ExactMatch(match) // nil when absent or not a string
	if !s.eat(',') {
		return ReasonWrongArity
	}
	proc, isStr := s.str()
	if !isStr {
		return ReasonWrongType
	}
	if !exact {
		out.kind = kindIgnored // a pattern is not a procedure
		return ""
	}
	out.procedure = proc
	return checkUTF8(out)
}

// [65, Request, Registration]
func (p *lineParser) parseV2Registered(out *logLine) string {
	if r := p.id(&out.id, false); r != "" {
		return r
	}
	return p.id(&out.registration, true)
}
