package wamplog

// Fuzz targets for the log path.
//
//   - FuzzParseLine: the line parser on arbitrary bytes, checked against its
//     own invariants, against itself (the same message in the JSON-array and
//     the legacy colon form, the same line re-encoded canonically), and
//     against encoding/json as a reference decoder of both the line and the
//     WAMP message inside it.
//   - FuzzHandleLines: a sequence of lines from a few senders through a
//     Reader into a real Tracker on a fake clock, checking the
//     bookkeeping (pending calls, outcomes, line and bad-line counters) after
//     every step and after Close.
//
// Run one with
//
//	go test -run '^$' -fuzz '^FuzzParseLine$' -fuzztime 1m -parallel 1 ./wamplog
//
// or all of them with ./fuzz.sh. The seeds are in testdata/fuzz/<FuzzName>/
// and run with every plain `go test`; they are written by
// TestWriteLogFuzzSeeds (FUZZ_WRITE_SEEDS=1 go test -run TestWriteLogFuzzSeeds ./wamplog).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gammazero/nexus/v3/wamp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// ---------------------------------------------------------------------------
// FuzzParseLine

// parsedLine is a parse result copied out of the parser's buffers, so that
// results can be kept and compared.
type parsedLine struct {
	reason              string
	protocol, direction string
	kind                msgKind
	view                view
	id                  uint64
	procedure           string
	hasProcedure        bool
	timeout             time.Duration
	errorURI            string
	hasErrorURI         bool
	registration        uint64
	sent                int64
	hasSent             bool
}

func (l parsedLine) String() string {
	return fmt.Sprintf("{reason:%q protocol:%q direction:%q kind:%d view:%d id:%#x procedure:%q(%v) timeout:%v errorURI:%q(%v) registration:%d}",
		l.reason, l.protocol, l.direction, l.kind, l.view, l.id, l.procedure, l.hasProcedure, l.timeout, l.errorURI, l.hasErrorURI, l.registration)
}

func parseCopy(p *lineParser, line []byte) parsedLine {
	var l logLine
	r := p.parse(line, &l)
	return parsedLine{
		reason: r, protocol: string(l.protocol), direction: string(l.direction),
		kind: l.kind, view: l.view, id: l.id,
		procedure: string(l.procedure), hasProcedure: l.procedure != nil,
		timeout:  l.timeout,
		errorURI: string(l.errorURI), hasErrorURI: l.errorURI != nil,
		registration: l.registration,
		sent:         l.sent, hasSent: l.hasSent,
	}
}

const v1IDBit = 1 << 63

// fuzzNameRE is what README promises of protocol and direction.
var fuzzNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

// parserReasons are the reasons parse itself may return; the others come
// from the ingester.
var parserReasons = map[string]bool{
	ReasonNotJSON: true, ReasonBadName: true, ReasonBadMessage: true, ReasonUnknownType: true,
	ReasonWrongArity: true, ReasonWrongType: true, ReasonBadID: true, ReasonInvalidUTF8: true,
	ReasonBadTime: true,
}

func FuzzParseLine(f *testing.F) {
	// The seeds are in testdata/fuzz/FuzzParseLine; these few keep the
	// target meaningful should that directory go missing.
	f.Add([]byte(`["wamp","out","[48,1,{\"timeout\":300},\"hello3\",[\"hello world 1\"]]"]`))
	f.Add([]byte(`[48,1,{"timeout":300},"hello3",["hello world 1"]]`))
	p := newLineParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		// The input as a whole line.
		checkLine(t, p, data)
		// The input as the WAMP message inside a line, in both forms.
		checkMessage(t, p, data)
	})
}

// checkLine checks parse on one line: determinism, invariants, and the
// line's outer layer against encoding/json.
func checkLine(t *testing.T, p *lineParser, line []byte) parsedLine {
	t.Helper()
	orig := bytes.Clone(line)
	got := parseCopy(p, line)
	if !bytes.Equal(line, orig) {
		t.Fatalf("parse modified its input: %q became %q", orig, line)
	}
	// Deterministic, also after other lines went through the same parser's
	// buffers, and with a fresh parser (whose v1 id hash has its own seed).
	parseCopy(p, []byte(`["wamp","out","[8,48,77,{\"x\":\"\\u00e9\\\"\"},\"app.e\\u0072ror\"]"]`))
	parseCopy(p, []byte(`wamp:in:[2,"\u00e9\"",{"x":"y"}]`))
	if again := parseCopy(p, line); again != got {
		t.Fatalf("parse is not deterministic on %q:\n first %v\nsecond %v", line, got, again)
	}
	fresh := parseCopy(newLineParser(), line)
	if fresh.id&v1IDBit != 0 && got.id&v1IDBit != 0 {
		fresh.id = got.id // v1 ids are hashed with a per-parser seed
	}
	if fresh != got {
		t.Fatalf("a fresh parser reads %q differently:\n  used %v\n fresh %v", line, got, fresh)
	}
	checkInvariants(t, line, got)

	trimmed := bytes.TrimSpace(line)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		checkOuterJSON(t, p, line, trimmed, got)
	} else {
		checkColonForm(t, p, line, trimmed, got)
	}
	return got
}

// checkInvariants checks what must hold of any parse result.
func checkInvariants(t *testing.T, line []byte, got parsedLine) {
	t.Helper()
	if got.reason != "" {
		if !parserReasons[got.reason] {
			t.Fatalf("parse(%q) returned reason %q, which is not a parser reason", line, got.reason)
		}
		return
	}
	fail := func(what string) { t.Fatalf("parse(%q) accepted: %s\n%v", line, what, got) }
	if !fuzzNameRE.MatchString(got.protocol) || !fuzzNameRE.MatchString(got.direction) {
		fail("protocol or direction is not [a-z][a-z0-9]{0,31}")
	}
	if !utf8.ValidString(got.procedure) || !utf8.ValidString(got.errorURI) {
		fail("procedure or error URI is not valid UTF-8")
	}
	if got.timeout < 0 || got.timeout%time.Millisecond != 0 || (got.timeout != 0 && got.kind != kindCall && got.kind != kindInvocation) {
		fail("timeout is negative, not whole milliseconds, or on something other than a CALL or INVOCATION")
	}
	v1 := got.id&v1IDBit != 0
	if !v1 && got.id > maxRequestID || got.registration > maxRequestID {
		fail("a v2 id or registration above 2^53")
	}
	if v1 && got.kind != kindCall && got.kind != kindResult && got.kind != kindError && got.kind != kindIgnored {
		fail("a v1 (hashed) id on a message v1 does not have")
	}
	switch got.kind {
	case kindCall:
		if !got.hasProcedure || got.view != callerView {
			fail("a CALL without a procedure, or in the callee's view")
		}
	case kindResult:
		if got.view != callerView {
			fail("a RESULT in the callee's view")
		}
	case kindError:
		if !got.hasErrorURI || (v1 && got.view != callerView) {
			fail("an ERROR without an error URI, or a v1 error in the callee's view")
		}
	case kindRegister:
		if !got.hasProcedure || got.view != calleeView {
			fail("a REGISTER without a procedure, or in the caller's view")
		}
	case kindInvocation, kindYield, kindInterrupt, kindRegistered:
		if got.view != calleeView {
			fail("a callee's message in the caller's view")
		}
	case kindIgnored:
	default:
		fail("an unknown kind")
	}
}

// jsonThreeStrings decodes line with encoding/json and reports whether it
// is an array of exactly three strings.
// jsonThreeStrings reads line with encoding/json as the parser should: an
// array of three strings and, optionally, a fourth element, the sender's
// time. ok is false when it is neither; timeOK tells whether the fourth
// element, if any, is an integer from 0 to MaxInt64 (then sent holds it).
func jsonThreeStrings(line []byte) (s [3]string, sent int64, hasSent, timeOK, ok bool) {
	var v []any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if d.Decode(&v) != nil || d.More() || (len(v) != 3 && len(v) != 4) {
		return s, 0, false, false, false
	}
	if _, err := d.Token(); err != io.EOF {
		return s, 0, false, false, false // trailing bytes after the array
	}
	for i := range 3 {
		str, isStr := v[i].(string)
		if !isStr {
			return s, 0, false, false, false
		}
		s[i] = str
	}
	if len(v) == 3 {
		return s, 0, false, true, true
	}
	n, isNum := v[3].(json.Number)
	if !isNum || !regexp.MustCompile(`^(0|[1-9][0-9]*)$`).MatchString(n.String()) {
		return s, 0, false, false, true
	}
	t, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		return s, 0, false, false, true
	}
	return s, t, true, true, true
}

// asJSONDecodes maps b the way encoding/json decodes a string holding
// those raw bytes: each byte that does not start a valid UTF-8 sequence
// becomes one U+FFFD. The parser keeps such bytes as they are, and checks
// UTF-8 only where it matters (procedure, error URI), so raw bytes are
// compared through this.
func asJSONDecodes(b string) string {
	if utf8.ValidString(b) {
		return b
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRuneInString(b)
		if r == utf8.RuneError && n == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.WriteString(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}

// checkOuterJSON compares the parser's reading of the JSON-array line form
// with encoding/json's.
//
// The comparison is on the line as parse sees it, after bytes.TrimSpace:
// trimming Unicode white space around the line (which encoding/json would
// refuse, e.g. a trailing U+00A0 or \v) is a deliberate leniency of the
// parser, not a disagreement about JSON.
//
// Within strings the two legitimately differ in one way: encoding/json
// replaces each byte of invalid UTF-8 with U+FFFD, while the parser keeps
// the raw bytes (and refuses them as invalid_utf8 only in a procedure or an
// error URI). Both turn lone surrogate escapes into U+FFFD. So the
// protocol and direction are compared through asJSONDecodes, and the
// stronger checks below (re-encoding, the inner message) only run when no
// decoded string holds U+FFFD, i.e. when both decoders must produce the
// very same bytes.
func checkOuterJSON(t *testing.T, p *lineParser, line, trimmed []byte, got parsedLine) {
	t.Helper()
	strs, sent, hasSent, timeOK, jsonOK := jsonThreeStrings(trimmed)
	parserOK := got.reason != ReasonNotJSON
	if jsonOK && !parserOK {
		t.Fatalf("encoding/json reads %q as three strings %q, the parser says not_json", line, strs)
	}
	if !jsonOK {
		if parserOK {
			t.Fatalf("the parser accepts %q as a JSON line (%v), encoding/json does not read three strings from it", line, got)
		}
		return
	}
	if !timeOK {
		if got.reason != ReasonBadTime {
			t.Fatalf("line %q: a fourth element that is not a time, reason %q", line, got.reason)
		}
		return
	}
	if got.reason == ReasonBadTime || got.hasSent != hasSent || got.sent != sent {
		t.Fatalf("line %q: encoding/json reads the time %v (%d), the parser %v", line, hasSent, sent, got)
	}
	if asJSONDecodes(got.protocol) != strs[0] || asJSONDecodes(got.direction) != strs[1] {
		t.Fatalf("line %q: parser read protocol %q direction %q, encoding/json %q %q", line, got.protocol, got.direction, strs[0], strs[1])
	}
	namesOK := fuzzNameRE.MatchString(strs[0]) && fuzzNameRE.MatchString(strs[1])
	if namesOK != (got.reason != ReasonBadName) {
		t.Fatalf("line %q: names %q %q, reason %q", line, strs[0], strs[1], got.reason)
	}
	for _, s := range strs {
		if strings.ContainsRune(s, utf8.RuneError) {
			return
		}
	}
	// The same three strings, encoded canonically, must read the same.
	elems := []any{strs[0], strs[1], strs[2]}
	if hasSent {
		elems = append(elems, sent)
	}
	canonical, err := json.Marshal(elems)
	if err != nil {
		t.Fatal(err)
	}
	if again := parseCopy(p, canonical); again != got {
		t.Fatalf("the same three strings read differently:\n%q\n  %v\n%q\n  %v", line, got, canonical, again)
	}
	if namesOK {
		checkRef(t, p, []byte(strs[2]), got, refMessage([]byte(strs[2])))
	}
}

// checkColonForm checks the legacy protocol:direction:message form: the
// split at the first two colons, and that the same three parts in the JSON
// form read the same.
func checkColonForm(t *testing.T, p *lineParser, line, trimmed []byte, got parsedLine) {
	t.Helper()
	pr, rest, ok1 := bytes.Cut(trimmed, []byte(":"))
	di, msg, ok2 := bytes.Cut(rest, []byte(":"))
	if !ok1 || !ok2 {
		if got.reason != ReasonNotJSON {
			t.Fatalf("line %q has no two colons but reads as %v", line, got)
		}
		return
	}
	if got.reason == ReasonNotJSON || got.protocol != string(pr) || got.direction != string(di) {
		t.Fatalf("line %q: want protocol %q direction %q, got %v", line, pr, di, got)
	}
	if !fuzzNameRE.Match(pr) || !fuzzNameRE.Match(di) {
		if got.reason != ReasonBadName {
			t.Fatalf("line %q: names %q %q, reason %q", line, pr, di, got.reason)
		}
		return
	}
	// msg went through the whole line's TrimSpace, so it has no trailing
	// white space to tell the forms apart.
	wrapped := wrapJSONLine(string(pr), string(di), msg)
	if again := parseCopy(p, wrapped); again != got {
		t.Fatalf("the same message reads differently in the two line forms:\n%q\n  %v\n%q\n  %v", line, got, wrapped, again)
	}
}

// wrapJSONLine builds ["protocol","direction","msg"], escaping msg so that
// a JSON decoder gets back exactly its bytes (invalid UTF-8 included).
func wrapJSONLine(protocol, direction string, msg []byte) []byte {
	b := make([]byte, 0, len(msg)+len(protocol)+len(direction)+16)
	b = append(b, `["`...)
	b = append(b, protocol...)
	b = append(b, `","`...)
	b = append(b, direction...)
	b = append(b, `","`...)
	for _, c := range msg {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = fmt.Appendf(b, `\u%04x`, c)
		default:
			b = append(b, c)
		}
	}
	return append(b, `"]`...)
}

// checkMessage checks msg as the WAMP message of a line: in the colon form
// (raw) and in the JSON form (escaped) it must read the same, never as a
// bad line form, and as encoding/json's reading of msg says.
func checkMessage(t *testing.T, p *lineParser, msg []byte) {
	t.Helper()
	colon := append([]byte("wamp:out:"), msg...)
	wrapped := wrapJSONLine("wamp", "out", msg)
	a := checkLine(t, p, colon)
	b := checkLine(t, p, wrapped)
	for _, r := range []parsedLine{a, b} {
		if r.reason == ReasonNotJSON || r.reason == ReasonBadName {
			t.Fatalf("message %q: a well-formed line holding it was refused as %s", msg, r.reason)
		}
	}
	// The colon form loses trailing Unicode white space to TrimSpace; only
	// JSON white space there is certain not to matter.
	if tail := msg[len(bytes.TrimRightFunc(msg, unicode.IsSpace)):]; len(bytes.Trim(tail, " \t\r\n")) == 0 && a != b {
		t.Fatalf("message %q reads differently in the two line forms:\n colon %v\n  json %v", msg, a, b)
	}
	checkRef(t, p, msg, b, refMessage(msg))

	// White space between JSON tokens means nothing: the same message
	// spaced out, or compacted, must read the same.
	if json.Valid(msg) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, msg); err != nil {
			t.Fatal(err)
		}
		for _, variant := range [][]byte{spaceOut(msg), compact.Bytes()} {
			if v := parseCopy(p, wrapJSONLine("wamp", "out", variant)); v != b {
				t.Fatalf("white space between JSON tokens changed the reading:\n%q\n  %v\n%q\n  %v", msg, b, variant, v)
			}
		}
	}
}

// spaceOut puts JSON white space around every structural character outside
// strings: ": " after keys, ", " after elements, as pretty printers and
// Python's json.dumps write them, and more.
func spaceOut(msg []byte) []byte {
	out := make([]byte, 0, 3*len(msg))
	inStr, esc := false, false
	for _, c := range msg {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			out = append(out, c)
		case c == '"':
			inStr = true
			out = append(out, c)
		case c == '[' || c == '{' || c == ',' || c == ':' || c == ']' || c == '}':
			out = append(out, '\n', c, ' ', '\t')
		default:
			out = append(out, c)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The reference: what encoding/json's reading of a WAMP message says the
// parser must make of it.

type expectation uint8

const (
	expectNothing expectation = iota // encoding/json does not settle it (invalid JSON, deep nesting, duplicate keys)
	expectReason                     // exactly this bad-line reason
	expectParsed                     // accepted with these fields
)

type refResult struct {
	expect expectation
	reason string

	kind         msgKind
	view         view
	id           uint64
	v1           bool // id is a hashed v1 string id: v1ID is the string
	v1ID         string
	registration uint64
	// procedure and errorURI: checked when check*; nil means absent.
	checkProcedure, checkErrorURI bool
	procedure, errorURI           *string
	checkTimeout                  bool
	timeout                       time.Duration
	// invalid_utf8 is an acceptable answer too: a string the parser checks
	// held U+FFFD after decoding (see checkOuterJSON).
	utf8Alt bool
}

func reasonIs(r string) refResult { return refResult{expect: expectReason, reason: r} }

// refDepthLimit: the parser refuses values nested deeper than 64 levels
// (maxJSONDepth; deep nesting is an attack, not a log line), while
// encoding/json allows 10000. Messages nested beyond this are not compared.
const refDepthLimit = 60

func jsonDepth(raw []byte) int {
	depth, maxDepth, inStr, esc := 0, 0, false, false
	for _, c := range raw {
		switch {
		case inStr:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			depth++
			maxDepth = max(maxDepth, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return maxDepth
}

func isJSONString(raw []byte) bool { return len(raw) > 0 && raw[0] == '"' }
func isJSONObject(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }
func isJSONNumber(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// plainUint reads a JSON number made of digits only that fits in a uint64.
func plainUint(raw []byte) (uint64, bool) {
	if len(raw) == 0 || bytes.ContainsFunc(raw, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	return v, err == nil
}

func jsonString(raw []byte) string {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		panic(fmt.Sprintf("not a JSON string %q: %v", raw, err))
	}
	return s
}

// jsonMembers lists an object's members in order, duplicates included
// (encoding/json's maps keep only the last).
func jsonMembers(raw []byte) (keys []string, vals []json.RawMessage) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		panic(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			panic(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		keys, vals = append(keys, k.(string)), append(vals, v)
	}
	return keys, vals
}

// member returns the value of key and how many times key occurs.
func member(keys []string, vals []json.RawMessage, key string) (json.RawMessage, int) {
	var v json.RawMessage
	n := 0
	for i, k := range keys {
		if k == key {
			v, n = vals[i], n+1
		}
	}
	return v, n
}

func hasFFFD(s string) bool { return strings.ContainsRune(s, utf8.RuneError) }

// refID is the v2 id (request id, request type, registration) at elems[i]:
// a non-negative integer of at most 2^53, else bad_id.
func refID(elems []json.RawMessage, i int) (uint64, *refResult) {
	if i >= len(elems) {
		r := reasonIs(ReasonWrongArity)
		return 0, &r
	}
	e := elems[i]
	if v, ok := plainUint(e); ok && v <= maxRequestID {
		return v, nil
	}
	if !isJSONNumber(e) && jsonDepth(e) > refDepthLimit {
		return 0, &refResult{}
	}
	r := reasonIs(ReasonBadID)
	return 0, &r
}

// refObject checks that elems[i] is an object the parser reads in full.
func refObject(elems []json.RawMessage, i int) (keys []string, vals []json.RawMessage, bad *refResult) {
	if i >= len(elems) {
		r := reasonIs(ReasonWrongArity)
		return nil, nil, &r
	}
	if !isJSONObject(elems[i]) {
		r := reasonIs(ReasonWrongType)
		return nil, nil, &r
	}
	if jsonDepth(elems[i]) > refDepthLimit {
		return nil, nil, &refResult{}
	}
	keys, vals = jsonMembers(elems[i])
	return keys, vals, nil
}

func refString(elems []json.RawMessage, i int) (string, *refResult) {
	if i >= len(elems) {
		r := reasonIs(ReasonWrongArity)
		return "", &r
	}
	if !isJSONString(elems[i]) {
		r := reasonIs(ReasonWrongType)
		return "", &r
	}
	return jsonString(elems[i]), nil
}

// WAMP v2 type codes that are valid but not about calls, from the spec:
// HELLO WELCOME ABORT CHALLENGE AUTHENTICATE GOODBYE HEARTBEAT PUBLISH
// PUBLISHED SUBSCRIBE SUBSCRIBED UNSUBSCRIBE UNSUBSCRIBED EVENT CANCEL
// UNREGISTER UNREGISTERED.
var refIgnoredCodes = map[uint64]bool{1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true,
	16: true, 17: true, 32: true, 33: true, 34: true, 35: true, 36: true, 49: true, 66: true, 67: true}

// And those that are: ERROR CALL RESULT REGISTER REGISTERED INVOCATION
// INTERRUPT YIELD.
var refTrackedCodes = map[uint64]bool{8: true, 48: true, 50: true, 64: true, 65: true, 68: true, 69: true, 70: true}

// refMessage says, from encoding/json's reading of msg, what the parser
// must make of it (README "The log path" and the WAMP spec).
func refMessage(msg []byte) refResult {
	if !json.Valid(msg) {
		return refResult{} // the parser reads only what it needs, so it may accept more
	}
	if t := bytes.TrimLeft(msg, " \t\r\n"); t[0] != '[' {
		return reasonIs(ReasonBadMessage)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(msg, &elems); err != nil {
		panic(err)
	}
	for i := range elems {
		elems[i] = bytes.Trim(elems[i], " \t\r\n")
	}
	if len(elems) == 0 {
		return reasonIs(ReasonBadMessage)
	}
	code, ok := plainUint(elems[0])
	if !ok {
		return reasonIs(ReasonBadMessage)
	}
	if len(elems) == 1 {
		if refIgnoredCodes[code] || refTrackedCodes[code] {
			return reasonIs(ReasonWrongArity)
		}
		return reasonIs(ReasonBadMessage)
	}
	if code >= 2 && code <= 4 && isJSONString(elems[1]) {
		return refV1(code, elems)
	}
	if !refTrackedCodes[code] {
		if refIgnoredCodes[code] {
			return refResult{expect: expectParsed, kind: kindIgnored}
		}
		return reasonIs(ReasonUnknownType)
	}

	var w refResult
	var id uint64
	if code == v2Error {
		reqType, bad := refID(elems, 1)
		if bad != nil {
			return *bad
		}
		if len(elems) < 3 {
			return reasonIs(ReasonWrongArity) // a comma must follow the request type
		}
		switch reqType {
		case v2Call:
			w.view = callerView
		case v2Invocation:
			w.view = calleeView
		default:
			return refResult{expect: expectParsed, kind: kindIgnored} // an error for a REGISTER, SUBSCRIBE, ...
		}
		if id, bad = refID(elems, 2); bad != nil {
			return *bad
		}
		if _, _, bad = refObject(elems, 3); bad != nil {
			return *bad
		}
		uri, bad := refString(elems, 4)
		if bad != nil {
			return *bad
		}
		w.kind, w.checkErrorURI, w.errorURI, w.utf8Alt = kindError, true, &uri, hasFFFD(uri)
		w.expect, w.id = expectParsed, id
		return w
	}

	id, bad := refID(elems, 1)
	if bad != nil {
		return *bad
	}
	w.expect, w.id = expectParsed, id
	switch code {
	case v2Call: // [48, Request, Options, Procedure, ...]
		keys, vals, bad := refObject(elems, 2)
		if bad != nil {
			return *bad
		}
		proc, bad := refString(elems, 3)
		if bad != nil {
			return *bad
		}
		w.kind, w.view, w.checkProcedure, w.procedure, w.utf8Alt = kindCall, callerView, true, &proc, hasFFFD(proc)
		w.refTimeout(keys, vals)
	case v2Result, v2Yield: // [50, Request, Details, ...]
		keys, vals, bad := refObject(elems, 2)
		if bad != nil {
			return *bad
		}
		w.kind, w.view = kindResult, callerView
		if code == v2Yield {
			w.kind, w.view = kindYield, calleeView
		}
		switch v, n := member(keys, vals, "progress"); {
		case n > 1:
			return refResult{}
		case n == 1 && string(v) == "true":
			return refResult{expect: expectParsed, kind: kindIgnored} // progressive: does not end the call
		}
	case v2Invocation: // [68, Request, Registration, Details, ...]
		reg, bad := refID(elems, 2)
		if bad != nil {
			return *bad
		}
		keys, vals, bad := refObject(elems, 3)
		if bad != nil {
			return *bad
		}
		w.kind, w.view, w.registration = kindInvocation, calleeView, reg
		w.refTimeout(keys, vals) // forwarded by the dealer (forward_timeout)
		switch v, n := member(keys, vals, "procedure"); {
		case n == 0 || n == 1 && !isJSONString(v):
			w.checkProcedure = true
		case n == 1:
			proc := jsonString(v)
			w.checkProcedure, w.procedure, w.utf8Alt = true, &proc, hasFFFD(proc)
		default:
			w.utf8Alt = true // which one counts is not settled
		}
	case v2Interrupt: // [69, Request, Options]
		keys, vals, bad := refObject(elems, 2)
		if bad != nil {
			return *bad
		}
		w.kind, w.view = kindInterrupt, calleeView
		switch v, n := member(keys, vals, "reason"); {
		case n == 0 || n == 1 && !isJSONString(v):
			w.checkErrorURI = true
		case n == 1:
			reason := jsonString(v)
			w.checkErrorURI, w.errorURI, w.utf8Alt = true, &reason, hasFFFD(reason)
		default:
			w.utf8Alt = true
		}
	case v2Register: // [64, Request, Options, Procedure]
		keys, vals, bad := refObject(elems, 2)
		if bad != nil {
			return *bad
		}
		v, n := member(keys, vals, "match")
		if n > 1 {
			return refResult{}
		}
		proc, bad := refString(elems, 3)
		if bad != nil {
			return *bad
		}
		if n == 1 && isJSONString(v) {
			if m := jsonString(v); m != "" && m != "exact" {
				return refResult{expect: expectParsed, kind: kindIgnored} // a pattern is not a procedure
			}
		}
		w.kind, w.view, w.checkProcedure, w.procedure, w.utf8Alt = kindRegister, calleeView, true, &proc, hasFFFD(proc)
	case v2Registered: // [65, Request, Registration]
		reg, bad := refID(elems, 2)
		if bad != nil {
			return *bad
		}
		w.kind, w.view, w.registration = kindRegistered, calleeView, reg
	}
	return w
}

// refTimeout reads the timeout option (CALL options, INVOCATION details)
// as nexus's dealer does: JSON decodes an unsigned integer as a uint64 and
// anything else numeric as a float64, and wamp.AsInt64 converts either (a
// uint64 beyond an int64 wraps negative). A positive result is a timeout
// in whole milliseconds, clamped to the longest Duration; anything else (a
// string, zero, a negative number, below one, NaN) means none. Duplicate
// keys: JSON leaves it open.
func (w *refResult) refTimeout(keys []string, vals []json.RawMessage) {
	const maxMillis = math.MaxInt64 / int64(time.Millisecond)
	switch v, n := member(keys, vals, "timeout"); n {
	case 0:
		w.checkTimeout = true
	case 1:
		w.checkTimeout = true
		var ms int64
		if u, ok := plainUint(v); ok {
			ms, _ = wamp.AsInt64(u)
		} else if isJSONNumber(v) {
			f, _ := strconv.ParseFloat(string(v), 64) // ±Inf beyond a float64
			ms, _ = wamp.AsInt64(f)
		}
		if ms > 0 {
			w.timeout = time.Duration(min(ms, maxMillis)) * time.Millisecond
		}
	}
}

// refV1 is WAMP v1: [2, callID, procURI, ...] [3, callID, result]
// [4, callID, errorURI, ...], call ids non-empty strings.
func refV1(code uint64, elems []json.RawMessage) refResult {
	if string(elems[1]) == `""` {
		return reasonIs(ReasonBadID)
	}
	w := refResult{expect: expectParsed, v1: true, v1ID: jsonString(elems[1]), view: callerView}
	switch code {
	case v1Call:
		proc, bad := refString(elems, 2)
		if bad != nil {
			return *bad
		}
		w.kind, w.checkProcedure, w.procedure, w.utf8Alt = kindCall, true, &proc, hasFFFD(proc)
	case v1CallResult:
		w.kind = kindResult
	case v1CallError:
		// Whatever follows the id, an error: the original writer logs
		// [4, id, {"msg": ...}] (a v2 CHALLENGE reads the same and answers
		// no pending call).
		uri := MissingErrorURI
		if len(elems) > 2 && isJSONString(elems[2]) {
			var bad *refResult
			if uri, bad = refString(elems, 2); bad != nil {
				return *bad
			}
		}
		// A URI that is not UTF-8 is no URI: MissingErrorURI. (From
		// encoding/json's reading, U+FFFD may be either.)
		w.kind, w.checkErrorURI, w.errorURI = kindError, !hasFFFD(uri), &uri
	}
	return w
}

// checkRef compares a parse result with the reference's expectation.
func checkRef(t *testing.T, p *lineParser, msg []byte, got parsedLine, w refResult) {
	t.Helper()
	fail := func(what string, args ...any) {
		t.Helper()
		t.Fatalf("message %q: %s\n got %v", msg, fmt.Sprintf(what, args...), got)
	}
	switch w.expect {
	case expectNothing:
		return
	case expectReason:
		if got.reason != w.reason {
			fail("encoding/json's reading says reason %q", w.reason)
		}
		return
	}
	if got.reason == ReasonInvalidUTF8 && w.utf8Alt {
		return
	}
	if got.reason != "" || got.kind != w.kind {
		fail("encoding/json's reading says accepted as kind %d", w.kind)
	}
	if w.kind == kindIgnored {
		return
	}
	if got.view != w.view {
		fail("view %d, want %d", got.view, w.view)
	}
	if w.v1 {
		if got.id&v1IDBit == 0 {
			fail("a v1 id must have the top bit set")
		}
		// The same id string, however it is escaped, is the same call.
		if !hasFFFD(w.v1ID) {
			id, _ := json.Marshal(w.v1ID)
			if other := parseCopy(p, fmt.Appendf(nil, "wamp:out:[3,%s]", id)); other.reason != "" || other.id != got.id {
				fail("v1 id %q hashes differently as %s: %v", w.v1ID, id, other)
			}
		}
	} else if got.id != w.id {
		fail("id %d, want %d", got.id, w.id)
	}
	if (w.kind == kindInvocation || w.kind == kindRegistered) && got.registration != w.registration {
		fail("registration %d, want %d", got.registration, w.registration)
	}
	if w.checkProcedure {
		if (w.procedure == nil) != !got.hasProcedure || w.procedure != nil && asJSONDecodes(got.procedure) != *w.procedure {
			fail("procedure, want %s", refStr(w.procedure))
		}
	}
	if w.checkErrorURI {
		if (w.errorURI == nil) != !got.hasErrorURI || w.errorURI != nil && asJSONDecodes(got.errorURI) != *w.errorURI {
			fail("error URI, want %s", refStr(w.errorURI))
		}
	}
	if w.checkTimeout && got.timeout != w.timeout {
		fail("timeout %v, want %v", got.timeout, w.timeout)
	}
}

func refStr(s *string) string {
	if s == nil {
		return "none"
	}
	return strconv.Quote(*s)
}

// ---------------------------------------------------------------------------
// FuzzHandleLines

// fuzzClock is the tracker's clock, moved by the fuzz input only.
type fuzzClock struct{ t time.Time }

func (c *fuzzClock) Now() time.Time { return c.t }

// logTally is what the ingester has recorded so far, read from its
// collectors directly (a registry Gather per line would be too slow).
type logTally struct {
	pending   int64 // sum of the families' pending calls
	count     [numOutcomes]uint64
	sum       [numOutcomes]float64
	bad       map[string]float64
	badTotal  float64
	lines     float64
	sessions  float64
	senders   float64
	negative  bool // some family's pending count is below zero
	trackerPn int64
	evicted   float64 // senders evicted for a new one
	dropped   float64 // their calls dropped without an outcome
}

func writeMetric(t *testing.T, m prometheus.Metric) *dto.Metric {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func tallyLog(t *testing.T, in *Ingester, r *Reader) logTally {
	t.Helper()
	tl := logTally{bad: map[string]float64{}, trackerPn: in.tracker.Pending()}
	for _, lf := range *in.families.Load() {
		f := lf.family
		if f == nil {
			continue
		}
		n := f.Pending()
		tl.negative = tl.negative || n < 0
		tl.pending += n
		totals := f.Totals()
		for o := range tl.count {
			tl.count[o] += totals.Calls[o]
			tl.sum[o] += totals.Seconds[o]
		}
		tl.sessions += float64(totals.Sessions)
	}
	for reason, c := range in.badLines {
		v := writeMetric(t, c).GetCounter().GetValue()
		tl.bad[reason] = v
		tl.badTotal += v
	}
	tl.lines = writeMetric(t, r.lines).GetCounter().GetValue()
	tl.senders = writeMetric(t, in.senders).GetGauge().GetValue()
	tl.evicted = writeMetric(t, in.evicted).GetCounter().GetValue()
	tl.dropped = writeMetric(t, in.dropped).GetCounter().GetValue()
	return tl
}

func (tl logTally) recorded() uint64 {
	return tl.count[metrics.Response] + tl.count[metrics.Error] + tl.count[metrics.Timeout]
}

// readerPending is the pending calls of the reader's open sessions.
func readerPending(r *Reader) int64 {
	var n int64
	for _, snd := range r.senders {
		for _, views := range snd.sessions {
			for _, s := range views {
				if s != nil {
					n += int64(s.Pending())
				}
			}
		}
	}
	return n
}

// The schedule byte for line i: bits 0-1 pick the sender (A, B, A, and a
// third, C, for which the MaxSenders bound of 2 evicts the sender seen
// least recently); bits 2-6 advance
// the clock by 0..31 × 20 ms before the line; bit 7 runs the sweeper
// (Tracker.Expire) and Reader.ForgetIdle after it.
const (
	schedSenderMask = 0x03
	schedAdvShift   = 2
	schedAdvMask    = 0x1f
	schedAdvUnit    = 20 * time.Millisecond
	schedSweep      = 0x80
	fuzzMaxLines    = 400
)

func FuzzHandleLines(f *testing.F) {
	f.Add([]byte(`["wamp","out","[48,1,{\"timeout\":300},\"hello3\",[\"hello world 1\"]]"]`+"\n"+
		`["wamp","out","[50,1,{},[\"Hello from hello3\"]]"]`), []byte{0x00, 0x04})
	f.Fuzz(func(t *testing.T, data, schedule []byte) {
		clock := &fuzzClock{t: time.Unix(1_700_000_000, 0)}
		tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: 300 * time.Millisecond, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		// The router's own family, as the program registers it: the log
		// pair wamp/router must be refused (family_conflict).
		if _, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: 10}); err != nil {
			t.Fatal(err)
		}
		in, err := NewIngester(reg, IngesterOpts{
			Tracker: tracker, MaxProcedures: 4, MaxFamilies: 4, MaxSenders: 2,
			IdleAfter: time.Second, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		r := in.NewReader("udp")
		senders := [4]netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:40002"),
			netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("[::1]:40003"),
		}
		lines := bytes.Split(data, []byte("\n"))
		if len(lines) > fuzzMaxLines {
			lines = lines[:fuzzMaxLines]
		}
		classify := newLineParser()
		var classified logLine
		var callLines uint64
		var elapsed time.Duration
		var abandoned int64 // pending calls of senders that went away
		var timed bool      // a line with its sender's time was handled
		prev := tallyLog(t, in, r)

		// checkStep checks what must hold after every step; stepName names it
		// (formatted only on failure).
		checkStep := func(stepName func() string) logTally {
			t.Helper()
			now := tallyLog(t, in, r)
			if now.negative {
				t.Fatalf("%s: a family's calls_in_flight went below zero", stepName())
			}
			if rp := readerPending(r) + abandoned; now.pending != rp || now.trackerPn != rp {
				t.Fatalf("%s: calls_in_flight sums to %d, the tracker counts %d, the open sessions hold %d", stepName(), now.pending, now.trackerPn, rp)
			}
			for o := range numOutcomes {
				if now.count[o] < prev.count[o] {
					t.Fatalf("%s: %v count went down", stepName(), o)
				}
				// Every duration lies between 0 and the time the tracker has
				// run: a call cannot have waited longer than that. A line
				// with its sender's time is placed by that clock, up to
				// maxAhead after its arrival (see senderClock), so once one
				// has come a duration may exceed that time by maxAhead.
				bound := elapsed
				if timed {
					bound += time.Duration(maxAhead)
				}
				d := now.sum[o] - prev.sum[o]
				n := float64(now.count[o] - prev.count[o])
				if d < -1e-9 || d > n*bound.Seconds()*(1+1e-9)+1e-9 {
					t.Fatalf("%s: %v new calls recorded with a total of %gs, but only %v passed since the tracker started, and lines with their sender's time came: %v (%v)",
						stepName(), n, d, elapsed, timed, o)
				}
			}
			if now.sessions < 0 || now.senders < 0 || now.senders > 2 {
				t.Fatalf("%s: sessions %v, senders %v", stepName(), now.sessions, now.senders)
			}
			return now
		}

		for i, line := range lines {
			var ctl byte
			if len(schedule) > 0 {
				ctl = schedule[i%len(schedule)]
			}
			adv := time.Duration(ctl>>schedAdvShift&schedAdvMask) * schedAdvUnit
			clock.t = clock.t.Add(adv)
			elapsed += adv

			reason := classify.parse(line, &classified)
			kind := classified.kind
			timed = timed || reason == "" && classified.hasSent
			starts := reason == "" && (kind == kindCall || kind == kindInvocation)
			if starts {
				callLines++
			}
			r.HandleLine(senders[ctl&schedSenderMask], line)
			step := func() string { return fmt.Sprintf("line %d %q (reason %q kind %d)", i, line, reason, kind) }
			now := checkStep(step)

			if now.lines != prev.lines+1 {
				t.Fatalf("%s: lines_total went from %v to %v", step(), prev.lines, now.lines)
			}
			newBad := now.badTotal - prev.badTotal
			switch {
			case reason != "":
				if newBad != 1 || now.bad[reason] != prev.bad[reason]+1 {
					t.Fatalf("%s: a bad line, but bad lines went from %v to %v", step(), prev.bad, now.bad)
				}
			case kind == kindIgnored && newBad != 0:
				t.Fatalf("%s: an ignored line counted as bad: %v to %v", step(), prev.bad, now.bad)
			case newBad > 1:
				t.Fatalf("%s: one line, %v bad lines", step(), newBad)
			case newBad == 1:
				for _, ingesterReason := range []string{ReasonTooManyFamilies, ReasonFamilyConflict, ReasonLintName, ReasonNoProcedure} {
					newBad -= now.bad[ingesterReason] - prev.bad[ingesterReason]
				}
				if newBad != 0 {
					t.Fatalf("%s: a good line counted as bad for a parser reason: %v to %v", step(), prev.bad, now.bad)
				}
			}

			// One line starts at most one call, or ends at most one. A
			// line from a new sender may first evict another: that one's
			// calls past their deadline are timeouts, the others dropped
			// and counted, and the line itself, its sender's first, answers
			// nothing.
			evicted := now.evicted - prev.evicted
			dropped := int64(now.dropped - prev.dropped)
			started := now.pending - prev.pending + int64(now.recorded()-prev.recorded()) + dropped
			ended := now.recorded() - prev.recorded()
			switch {
			case evicted < 0 || evicted > 1 || dropped < 0 || evicted == 0 && dropped != 0:
				t.Fatalf("%s: evicted %v senders, dropping %d calls", step(), evicted, dropped)
			case evicted == 1 && (started < 0 || started > 1 || now.count[metrics.Response] != prev.count[metrics.Response] || now.count[metrics.Error] != prev.count[metrics.Error]):
				t.Fatalf("%s: an eviction with pending %d → %d, recorded %v → %v, dropped %d", step(), prev.pending, now.pending, prev.count, now.count, dropped)
			case evicted == 1:
				// Its timeouts are the evicted sender's; the checks of a
				// line's own answer do not apply.
			case started < 0 || started > 1 || ended > 1:
				t.Fatalf("%s: pending %d → %d, recorded %d → %d", step(), prev.pending, now.pending, prev.recorded(), now.recorded())
			case started == 1 && !starts:
				t.Fatalf("%s: a call started on a line that starts none", step())
			case ended == 1 && started == 0 && kind != kindResult && kind != kindYield && kind != kindError && kind != kindInterrupt:
				t.Fatalf("%s: an outcome recorded on a line that answers nothing", step())
			case ended == 1 && (kind == kindResult || kind == kindYield) && now.count[metrics.Error] != prev.count[metrics.Error]:
				t.Fatalf("%s: a result recorded as an error", step())
			case ended == 1 && (kind == kindError || kind == kindInterrupt) && now.count[metrics.Response] != prev.count[metrics.Response]:
				t.Fatalf("%s: an error recorded as a response", step())
			}
			prev = now

			if ctl&schedSweep != 0 {
				tracker.Expire(nil)
				now = checkStep(func() string { return fmt.Sprintf("sweep after line %d", i) })
				if now.count[metrics.Response] != prev.count[metrics.Response] || now.count[metrics.Error] != prev.count[metrics.Error] ||
					int64(now.count[metrics.Timeout]-prev.count[metrics.Timeout]) != prev.pending-now.pending {
					t.Fatalf("sweep after line %d: pending %d → %d, outcomes %v → %v", i, prev.pending, now.pending, prev.count, now.count)
				}
				prev = now
				r.ForgetIdle()
				now = checkStep(func() string { return fmt.Sprintf("ForgetIdle after line %d", i) })
				if now.pending != prev.pending || now.recorded() != prev.recorded() {
					t.Fatalf("ForgetIdle after line %d dropped or recorded calls: pending %d → %d", i, prev.pending, now.pending)
				}
				prev = now
			}
		}

		// The senders go away: their calls end as timeouts at their
		// deadlines, at the latest the longest a line may ask for.
		abandoned = readerPending(r)
		r.Close()
		prev = checkStep(func() string { return "Close" })
		wait := DefaultMaxTimeout + metrics.DealerBackstop + time.Millisecond
		clock.t = clock.t.Add(wait)
		elapsed += wait
		tracker.Expire(nil)
		abandoned = 0
		now := checkStep(func() string { return "sweep after Close" })
		if now.pending != 0 || now.count[metrics.Response] != prev.count[metrics.Response] || now.count[metrics.Error] != prev.count[metrics.Error] {
			t.Fatalf("sweep after Close: pending %d → %d, outcomes %v → %v", prev.pending, now.pending, prev.count, now.count)
		}
		checkLogRegistry(t, reg, len(lines), callLines)
	})
}

// checkLogRegistry checks the scrape after Close.
func checkLogRegistry(t *testing.T, reg *prometheus.Registry, lines int, callLines uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	summaries := map[string]uint64{} // <prefix>_<outcome>
	histograms := map[string]uint64{}
	var recorded uint64
	var badTotal float64
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch {
			case name == "wamp_observer_log_lines_total":
				if v := m.GetCounter().GetValue(); v != float64(lines) {
					t.Fatalf("lines_total %v, %d lines handled", v, lines)
				}
			case name == "wamp_observer_log_bad_lines_total":
				badTotal += m.GetCounter().GetValue()
			case name == "wamp_observer_log_calls_pending", name == "wamp_observer_log_senders",
				strings.HasSuffix(name, "_calls_in_flight"), strings.HasSuffix(name, "_sessions"):
				if v := m.GetGauge().GetValue(); v != 0 {
					t.Fatalf("%s is %v after Close", name, v)
				}
			case strings.HasSuffix(name, "_total_seconds"):
				histograms[strings.TrimSuffix(name, "_total_seconds")] += m.GetHistogram().GetSampleCount()
			case strings.HasSuffix(name, "_seconds"):
				n := m.GetSummary().GetSampleCount()
				summaries[strings.TrimSuffix(name, "_seconds")] += n
				recorded += n
			}
		}
	}
	if badTotal > float64(lines) {
		t.Fatalf("%v bad lines out of %d", badTotal, lines)
	}
	if recorded > callLines {
		t.Fatalf("%d outcomes recorded, but only %d lines start a call", recorded, callLines)
	}
	// README: the summaries and the histograms hold the same calls. (A
	// summary vector with no procedure yet is not in the scrape at all.)
	for k, n := range histograms {
		if summaries[k] != n {
			t.Fatalf("%s: the summaries hold %d calls, the histogram %d", k, summaries[k], n)
		}
	}
	for k, n := range summaries {
		if histograms[k] != n {
			t.Fatalf("%s: the summaries hold %d calls, the histogram %d", k, n, histograms[k])
		}
	}
}

// ---------------------------------------------------------------------------
// Seeds

// TestWriteLogFuzzSeeds (re)writes the seed corpora of this file's fuzz
// targets in testdata/fuzz. It does nothing unless FUZZ_WRITE_SEEDS=1.
func TestWriteLogFuzzSeeds(t *testing.T) {
	if os.Getenv("FUZZ_WRITE_SEEDS") != "1" {
		t.Skip("set FUZZ_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	for name, line := range parseLineSeeds() {
		writeFuzzSeed(t, "FuzzParseLine", name, []byte(line))
	}
	for name, s := range handleLinesSeeds() {
		writeFuzzSeed(t, "FuzzHandleLines", name, []byte(strings.Join(s.lines, "\n")), s.schedule)
	}
}

func writeFuzzSeed(t *testing.T, target, name string, values ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		fmt.Fprintf(&b, "[]byte(%q)\n", v)
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// seedWrap is the line of a seed: its message byte for byte (wrapJSONLine),
// so that seeds may carry what testkit.LogLine would change.
func seedWrap(protocol, direction, msg string) string {
	return string(wrapJSONLine(protocol, direction, []byte(msg)))
}

// parseLineSeeds: the lines of README and php/README.md, the original
// writer's v1 lines (its broken error frame included), a bad line of each
// parser reason, and bare messages (the target reads its input both as a
// line and as a message).
func parseLineSeeds() map[string]string {
	s := map[string]string{
		// php/README.md, "Log lines", verbatim.
		"php_readme_call":       `["wamp","out","[48,1,{\"timeout\":300},\"hello3\",[\"hello world 1\"]]"]`,
		"php_readme_result":     `["wamp","out","[50,1,{},[\"Hello from hello3\"]]"]`,
		"php_readme_error":      `["wamp","out","[8,48,3,{},\"wamp.error.timeout\",[\"call timeout\"]]"]`,
		"php_readme_invocation": `["wamp","in","[68,1,25,{\"progress\":false,\"procedure\":\"hello3\"},[\"hello world 1\"]]"]`,
		"php_readme_yield":      `["wamp","in","[70,1,{},[\"Hello from hello3\"]]"]`,
		"php_readme_error_in":   `["wamp","in","[8,68,192,{},\"app.error.hello\",[]]"]`,
		"php_readme_interrupt":  `["wamp","in","[69,8,{\"reason\":\"wamp.error.timeout\",\"mode\":\"killnowait\"}]"]`,
		"php_readme_v1_call":    `["wamp","in","[2,\"f7de8d936fb95715\",\"hello4\",{\"msg\":\"hello world 1 details\"}]"]`,
		"php_readme_v1_result":  `["wamp","in","[3,\"f7de8d936fb95715\",{\"msg\":\"hello world 1 reply details\"}]"]`,
		"php_readme_v1_error":   `["wamp","in","[4,\"c3356b633c7ff987\",\"app.error.hello\",\"hello world 3 error details\"]"]`,
		// The original writer's broken error frame, and the oldest form.
		"v1_broken_error_frame": seedWrap("wamp", "in", `[4,"5f1a,"{msg":"hello world1 error details"}]`),
		"legacy_colon_v1_call":  `wamp:in:[2,"abc","hello5",{"msg":"x"}]`,
		"legacy_colon_v2_call":  `wamp:out:[48,7,{"timeout":1000},"hello1",[]]`,
		// More good lines.
		"v2_register":                seedWrap("wamp", "in", `[64,1,{},"hello1"]`),
		"v2_register_prefix":         seedWrap("wamp", "in", `[64,2,{"match":"prefix"},"com."]`),
		"v2_registered":              seedWrap("wamp", "in", `[65,1,4242]`),
		"v2_invocation_learnt":       seedWrap("wamp", "in", `[68,5,4242,{}]`),
		"v2_progressive_result":      seedWrap("wamp", "out", `[50,7,{"progress":true},[1]]`),
		"v2_progress_false":          seedWrap("wamp", "out", `[50,7,{"progress":false}]`),
		"v2_progressive_yield":       seedWrap("wamp", "in", `[70,5,{"progress":true}]`),
		"v2_hello":                   seedWrap("wamp", "out", `[1,"realm1",{"roles":{}}]`),
		"v2_welcome":                 seedWrap("wamp", "out", `[2,123,{}]`),
		"v2_goodbye":                 seedWrap("wamp", "out", `[6,{},"wamp.close.close_realm"]`),
		"v2_challenge":               seedWrap("wamp", "out", `[4,"ticket",{}]`),
		"v2_error_register":          seedWrap("wamp", "in", `[8,64,5,{},"wamp.error.procedure_already_exists"]`),
		"v2_call_max_id":             seedWrap("wamp", "out", `[48,9007199254740992,{},"com.example.add"]`),
		"v2_call_max_timeout":        seedWrap("wamp", "out", `[48,3,{"timeout":9223372036853},"p"]`),
		"v2_call_wrapped_timeout":    seedWrap("wamp", "out", `[48,3,{"timeout":18446744073709551615},"p"]`),
		"v2_call_huge_float_timeout": seedWrap("wamp", "out", `[48,3,{"timeout":1e300},"p"]`),
		"v2_call_escapes":            seedWrap("wamp", "out", `[48,3,{},"caf\u00e9.\ud83d\ude00"]`),
		"v2_call_lone_surrogate":     seedWrap("wamp", "out", `[48,3,{},"a\ud800b"]`),
		"spaces_and_crlf":            ` [ "wamp" , "out" , "[48, 4, {}, \"p\"]" ] ` + "\r",
		"names_max_length":           seedWrap(strings.Repeat("a", 32), "z9", `[48,1,{},"p"]`),
		"datagram_two_lines":         seedWrap("wamp", "out", `[48,1,{},"p"]`) + "\n" + seedWrap("wamp", "out", `[50,1,{}]`),
		// Bare messages.
		"msg_call":                         `[48,1,{"timeout":300},"hello3",["hello world 1"]]`,
		"msg_result":                       `[50,1,{},["Hello from hello3"]]`,
		"msg_error":                        `[8,48,3,{},"wamp.error.timeout",["call timeout"]]`,
		"msg_invocation":                   `[68,1,25,{"progress":false,"procedure":"hello3"},["hello world 1"]]`,
		"msg_invocation_forwarded_timeout": `[68,5,77,{"timeout":1000,"procedure":"hello2"}]`,
		"msg_interrupt":                    `[69,8,{"reason":"wamp.error.timeout","mode":"killnowait"}]`,
		"msg_v1_call":                      `[2,"f7de8d936fb95715","hello4",{"msg":"hello world 1 details"}]`,
		"msg_v1_broken":                    `[4,"5f1a,"{msg":"hello world1 error details"}]`,
		"msg_register":                     `[64,1,{"match":"exact"},"hello1"]`,
		"msg_registered":                   `[65,1,4242]`,
		"msg_progressive":                  `[70,5,{"progress":true},["part"]]`,
		// Pretty-printed, as Python's json.dumps separators write it.
		"msg_spaced_call":      `[48, 1, {"timeout": 300, "disclose_me": true}, "hello3", ["hello world 1"]]`,
		"msg_spaced_result":    `[50, 1, {"progress": false}, ["Hello from hello3"]]`,
		"msg_spaced_interrupt": `[69, 8, {"reason": "wamp.error.timeout", "mode": "killnowait"}]`,
		"msg_spaced_register":  `[64, 1, {"match": "prefix"}, "com.example."]`,
		// Regression (found by this target): with white space after the
		// colon, "progress": true was not seen (parseV2Answer read the
		// literal without skipping white space), and the first progressive
		// RESULT or YIELD ended the call as a response.
		"regression_progress_after_white_space": `[50, 7, {"progress": true}, ["part 1"]]`,
	}
	// A bad line of each reason the parser gives (TestParseBadLines).
	long := strings.Repeat("a", 33)
	for name, line := range map[string]string{
		"not_json_empty":           ``,
		"not_json_text":            `hello world`,
		"not_json_object":          `{"protocol":"wamp"}`,
		"not_json_two":             `["wamp","in"]`,
		"not_json_four":            `["wamp","in","[48,1,{},\"p\"]","x"]`,
		"not_json_number_protocol": `[1,"in","[48,1,{},\"p\"]"]`,
		"not_json_message_array":   `["wamp","in",[48,1,{},"p"]]`,
		"not_json_unterminated":    `["wamp","in","[48,1,{},\"p\"]"`,
		"not_json_trailing":        `["wamp","in","[48,1,{},\"p\"]"]x`,
		"not_json_bad_escape":      `["wamp","in","\q"]`,
		"not_json_control":         "[\"wamp\",\"in\",\"a\x01\"]",
		"not_json_colon_short":     `wamp:in`,
		"bad_name_upper":           seedWrap("WAMP", "in", `[48,1,{},"p"]`),
		"bad_name_underscore":      seedWrap("wamp_x", "in", `[48,1,{},"p"]`),
		"bad_name_digit":           seedWrap("wamp", "1n", `[48,1,{},"p"]`),
		"bad_name_empty":           seedWrap("wamp", "", `[48,1,{},"p"]`),
		"bad_name_long":            seedWrap(long, "in", `[48,1,{},"p"]`),
		"bad_name_unicode":         seedWrap("wämp", "in", `[48,1,{},"p"]`),
		"bad_message_text":         seedWrap("wamp", "in", `hello`),
		"bad_message_object":       seedWrap("wamp", "in", `{"type":48}`),
		"bad_message_empty":        seedWrap("wamp", "in", `[]`),
		"bad_message_type_string":  seedWrap("wamp", "in", `["48",1,{},"p"]`),
		"bad_message_negative":     seedWrap("wamp", "in", `[-48,1,{},"p"]`),
		"bad_message_huge_type":    seedWrap("wamp", "in", `[99999999999999999999999,1]`),
		"unknown_message_type":     seedWrap("wamp", "in", `[99,1,{},"p"]`),
		"wrong_arity_only_type":    seedWrap("wamp", "in", `[48]`),
		"wrong_arity_no_procedure": seedWrap("wamp", "in", `[48,1,{}]`),
		"wrong_arity_error":        seedWrap("wamp", "in", `[8,48,1,{}]`),
		"wrong_arity_registered":   seedWrap("wamp", "in", `[65,1]`),
		"wrong_arity_v1_call":      seedWrap("wamp", "in", `[2,"id"]`),
		"wrong_type_options_list":  seedWrap("wamp", "in", `[48,1,[],"p"]`),
		"wrong_type_procedure":     seedWrap("wamp", "in", `[48,1,{},5]`),
		"wrong_type_details":       seedWrap("wamp", "in", `[50,1,"x"]`),
		"wrong_type_error_uri":     seedWrap("wamp", "in", `[8,48,1,{},7]`),
		"wrong_type_v1_error_uri":  seedWrap("wamp", "in", `[4,"id",5]`),
		"wrong_type_deep_nesting":  seedWrap("wamp", "in", `[48,1,{"a":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`},"p"]`),
		"bad_id_float":             seedWrap("wamp", "in", `[48,1.5,{},"p"]`),
		"bad_id_negative":          seedWrap("wamp", "in", `[48,-1,{},"p"]`),
		"bad_id_above_2_53":        seedWrap("wamp", "in", `[48,9007199254740993,{},"p"]`),
		"bad_id_string":            seedWrap("wamp", "in", `[48,"1",{},"p"]`),
		"bad_id_object":            seedWrap("wamp", "in", `[48,{"id":1},{},"p"]`),
		"bad_id_exponent":          seedWrap("wamp", "in", `[50,1e3,{}]`),
		"bad_id_request_type":      seedWrap("wamp", "in", `[8,"CALL",1,{},"e"]`),
		"bad_id_registration":      seedWrap("wamp", "in", `[68,1,"r",{}]`),
		"bad_id_v1_empty":          seedWrap("wamp", "in", `[2,"","hello1"]`),
		"invalid_utf8_procedure":   "[\"wamp\",\"in\",\"[48,1,{},\\\"p\xff\\\"]\"]",
		"invalid_utf8_error_uri":   seedWrap("wamp", "out", "[8,48,1,{},\"app.\xc3(\"]"),
	} {
		s["bad_"+name] = line
	}
	return s
}

type linesSeed struct {
	lines    []string
	schedule []byte
}

func sched(sender byte, advance byte, sweep bool) byte {
	b := sender&schedSenderMask | (advance&schedAdvMask)<<schedAdvShift
	if sweep {
		b |= schedSweep
	}
	return b
}

// handleLinesSeeds are realistic conversations: a caller's and a callee's
// lines interleaved, timeouts by the clock and by the dealer, v1 frames,
// and the limits (families, senders, procedures).
func handleLinesSeeds() map[string]linesSeed {
	return map[string]linesSeed{
		"caller_call_result_error_timeout": {
			lines: []string{
				`["wamp","out","[1,\"realm1\",{\"roles\":{\"caller\":{}}}]"]`,
				`["wamp","out","[2,7182818,{\"roles\":{\"dealer\":{}}}]"]`,
				`["wamp","out","[48,1,{\"timeout\":300},\"hello3\",[\"hello world 1\"]]"]`,
				`["wamp","out","[50,1,{},[\"Hello from hello3\"]]"]`,
				`["wamp","out","[48,2,{\"timeout\":300},\"hello1\",[\"hello world 2\"]]"]`,
				`["wamp","out","[8,48,2,{},\"app.error.hello\",[]]"]`,
				`["wamp","out","[48,3,{\"timeout\":300},\"hello2\",[\"hello world 3\"]]"]`,
				`["wamp","out","[8,48,3,{},\"wamp.error.timeout\",[\"call timeout\"]]"]`,
				`["wamp","out","[48,4,{},\"hello4\",[]]"]`,
				`["wamp","out","[50,4,{},[\"late\"]]"]`,
				`["wamp","out","[6,{},\"wamp.close.close_realm\"]"]`,
			},
			schedule: []byte{sched(0, 0, false), sched(0, 0, false), sched(0, 0, false), sched(0, 1, false),
				sched(0, 0, false), sched(0, 2, false), sched(0, 0, false), sched(0, 14, false),
				sched(0, 0, false), sched(0, 20, true), sched(0, 0, true)},
		},
		"callee_register_invoke_yield_interrupt": {
			lines: []string{
				`["wamp","in","[64,1,{},\"hello1\"]"]`,
				`["wamp","in","[65,1,25]"]`,
				`["wamp","in","[68,1,25,{},[\"hello world 1\"]]"]`,
				`["wamp","in","[70,1,{},[\"Hello from hello1\"]]"]`,
				`["wamp","in","[68,2,25,{\"progress\":false,\"procedure\":\"hello1\"},[]]"]`,
				`["wamp","in","[70,2,{\"progress\":true},[\"part\"]]"]`,
				`["wamp","in","[70,2,{},[\"done\"]]"]`,
				`["wamp","in","[68,3,25,{}]"]`,
				`["wamp","in","[69,3,{\"reason\":\"wamp.error.timeout\",\"mode\":\"killnowait\"}]"]`,
				`["wamp","in","[68,4,26,{}]"]`,
				`["wamp","in","[68,5,25,{}]"]`,
				`["wamp","in","[8,68,5,{},\"app.error.hello\",[]]"]`,
			},
			schedule: []byte{sched(1, 0, false), sched(1, 0, false), sched(1, 0, false), sched(1, 1, false),
				sched(1, 0, false), sched(1, 0, false), sched(1, 1, false), sched(1, 0, false), sched(1, 15, true)},
		},
		"two_senders_same_ids": {
			lines: []string{
				`["wamp","out","[48,1,{},\"hello1\"]"]`,
				`["wamp","out","[48,1,{},\"hello2\"]"]`,
				`["wamp","out","[50,1,{}]"]`,
				`["wamp","out","[8,48,1,{},\"app.error\"]"]`,
				`["wamp","out","[50,1,{}]"]`,
			},
			schedule: []byte{sched(0, 0, false), sched(1, 1, false), sched(0, 1, false), sched(1, 1, false), sched(0, 1, false)},
		},
		"v1_writer": {
			lines: []string{
				`["wamp","in","[2,\"f7de8d936fb95715\",\"hello4\",{\"msg\":\"hello world 1 details\"}]"]`,
				`["wamp","in","[3,\"f7de8d936fb95715\",{\"msg\":\"hello world 1 reply details\"}]"]`,
				`["wamp","in","[2,\"c3356b633c7ff987\",\"hello3\",{\"msg\":\"hello world 3 details\"}]"]`,
				`["wamp","in","[4,\"c3356b633c7ff987\",\"app.error.hello\",\"hello world 3 error details\"]"]`,
				`["wamp","in","[2,\"5f1a\",\"hello1\",{\"msg\":\"hello world1 details\"}]"]`,
				`["wamp","in","[4,\"5f1a,\"{msg\":\"hello world1 error details\"}]"]`,
				`wamp:in:[2,"abc","hello5",{"msg":"x"}]`,
				`wamp:in:[3,"abc",{}]`,
			},
			schedule: []byte{sched(0, 1, false), sched(0, 2, false), sched(0, 1, false), sched(0, 20, true)},
		},
		"limits_families_senders_procedures": {
			lines: []string{
				`["wamp","router","[48,1,{},\"p\"]"]`,
				`["a","b","[48,1,{},\"p1\"]"]`,
				`["c","d","[48,1,{},\"p2\"]"]`,
				`["e","f","[48,1,{},\"p3\"]"]`,
				`["g","h","[48,1,{},\"p4\"]"]`,
				`["i","j","[48,1,{},\"p5\"]"]`,
				`["a","b","[48,2,{},\"p6\"]"]`,
				`["a","b","[48,3,{},\"p7\"]"]`,
				`["a","b","[48,4,{},\"p8\"]"]`,
				`["a","b","[48,5,{},\"p9\"]"]`,
				`["a","b","[50,5,{}]"]`,
				`["a","b","[48,6,{},\"p1\"]"]`,
				`["wamp","in","[68,9,999,{}]"]`,
				``,
				`garbage`,
			},
			schedule: []byte{sched(0, 0, false), sched(1, 0, false), sched(3, 0, false), sched(0, 3, true), sched(3, 30, true)},
		},
		"duplicate_ids_and_answers_without_calls": {
			lines: []string{
				`["wamp","out","[50,9,{}]"]`,
				`["wamp","out","[48,1,{\"timeout\":100},\"hello1\"]"]`,
				`["wamp","out","[48,1,{\"timeout\":5000},\"hello1\"]"]`,
				`["wamp","out","[50,1,{\"progress\":true}]"]`,
				`["wamp","out","[50,1,{}]"]`,
				`["wamp","out","[50,1,{}]"]`,
				`["wamp","out","[8,48,1,{},\"wamp.error.canceled\"]"]`,
			},
			schedule: []byte{sched(0, 1, false), sched(0, 1, false), sched(0, 3, false), sched(0, 4, true)},
		},
		"huge_timeouts": {
			lines: []string{
				`["wamp","out","[48,2,{\"timeout\":9007199254740991},\"hello1\"]"]`,
				`["wamp","out","[48,3,{\"timeout\":18446744073709551615},\"hello1\"]"]`,
				`["wamp","out","[50,3,{}]"]`,
			},
			schedule: []byte{sched(0, 1, false), sched(0, 1, true), sched(0, 31, true)},
		},
		// Regression (found by this target, fixed in 270f2c9): the largest
		// timeout the parser accepts (just under 2^63 ns) overflowed the
		// deadline (start + timeout, int64 nanoseconds) once the tracker
		// had run a few milliseconds, and the sweep recorded the call at
		// once as a timeout of 292 years.
		"regression_timeout_deadline_overflow": {
			lines:    []string{`["wamp","out","[48,1,{\"timeout\":9223372036853},\"hello1\"]"]`},
			schedule: []byte{sched(0, 1, true)},
		},
	}
}
