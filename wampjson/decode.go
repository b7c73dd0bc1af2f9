package wampjson

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/gammazero/nexus/v3/wamp"
)

// maxDepth bounds the nesting the fast path follows; deeper input goes to
// nexus's serializer, whose own limits then apply.
const maxDepth = 32

// decodeFast decodes the messages on the hot path — those clients send
// (CALL, YIELD, ERROR, PUBLISH), and those a router sends them (RESULT,
// INVOCATION, EVENT), which the proxy reads from its upstream — into what
// nexus's JSONSerializer would make of them. ok is false for anything else, or anything it is not sure of:
// then nexus's serializer decides, errors included.
func decodeFast(data []byte) (msg wamp.Message, ok bool) {
	d := decoder{b: data}
	d.skipSpace()
	if !d.consume('[') {
		return nil, false
	}
	// The type first: a message nexus is to decode anyway is not read
	// twice.
	first, ok := d.value(0)
	typ, isUint := first.(uint64)
	if !ok || !isUint {
		return nil, false
	}
	switch wamp.MessageType(typ) {
	case wamp.CALL, wamp.YIELD, wamp.ERROR, wamp.PUBLISH, wamp.RESULT, wamp.INVOCATION, wamp.EVENT:
	default:
		return nil, false
	}
	list, ok := d.elements([]any{first}, 0)
	if !ok {
		return nil, false
	}
	d.skipSpace()
	if d.i != len(d.b) {
		return nil, false // nexus's decoder stops after the array; let it judge the rest
	}
	// The fields are filled as nexus's listToMsg does: element i+1 into
	// field i, a null leaves the field as wamp.NewMessage made it, a
	// missing one too, and extra elements are ignored. Only the types a
	// field already has are taken here; a conversion nexus would try, or
	// refuse, is left to it.
	f := fields(list[1:])
	switch wamp.MessageType(typ) {
	case wamp.CALL:
		m := &wamp.Call{}
		ok = f.id(0, &m.Request) && f.dict(1, &m.Options) && f.uri(2, &m.Procedure) &&
			f.list(3, &m.Arguments) && f.dict(4, &m.ArgumentsKw)
		return m, ok
	case wamp.YIELD:
		m := &wamp.Yield{}
		ok = f.id(0, &m.Request) && f.dict(1, &m.Options) &&
			f.list(2, &m.Arguments) && f.dict(3, &m.ArgumentsKw)
		return m, ok
	case wamp.ERROR:
		m := &wamp.Error{Type: wamp.ERROR, Details: wamp.Dict{}} // as wamp.NewMessage makes it
		ok = f.messageType(0, &m.Type) && f.id(1, &m.Request) && f.dict(2, &m.Details) &&
			f.uri(3, &m.Error) && f.list(4, &m.Arguments) && f.dict(5, &m.ArgumentsKw)
		return m, ok
	case wamp.PUBLISH:
		m := &wamp.Publish{}
		ok = f.id(0, &m.Request) && f.dict(1, &m.Options) && f.uri(2, &m.Topic) &&
			f.list(3, &m.Arguments) && f.dict(4, &m.ArgumentsKw)
		return m, ok
	case wamp.RESULT:
		m := &wamp.Result{}
		ok = f.id(0, &m.Request) && f.dict(1, &m.Details) &&
			f.list(2, &m.Arguments) && f.dict(3, &m.ArgumentsKw)
		return m, ok
	case wamp.INVOCATION:
		m := &wamp.Invocation{}
		ok = f.id(0, &m.Request) && f.id(1, &m.Registration) && f.dict(2, &m.Details) &&
			f.list(3, &m.Arguments) && f.dict(4, &m.ArgumentsKw)
		return m, ok
	case wamp.EVENT:
		m := &wamp.Event{}
		ok = f.id(0, &m.Subscription) && f.id(1, &m.Publication) && f.dict(2, &m.Details) &&
			f.list(3, &m.Arguments) && f.dict(4, &m.ArgumentsKw)
		return m, ok
	}
	return nil, false
}

// fields are a message's elements after its type. Each method below
// fills one message field from element i when that element has the
// field's own type, leaves the field as it is when the element is null or
// missing (as listToMsg does), and is false otherwise: nexus's to judge.
type fields []any

func (f fields) id(i int, dst *wamp.ID) bool {
	if i >= len(f) || f[i] == nil {
		return true
	}
	v, ok := f[i].(uint64)
	*dst = wamp.ID(v)
	return ok
}

func (f fields) messageType(i int, dst *wamp.MessageType) bool {
	if i >= len(f) || f[i] == nil {
		return true
	}
	v, ok := f[i].(uint64)
	if !ok || v > 1<<31 {
		return false
	}
	*dst = wamp.MessageType(v)
	return true
}

func (f fields) dict(i int, dst *wamp.Dict) bool {
	if i >= len(f) || f[i] == nil {
		return true
	}
	v, ok := f[i].(map[string]any)
	*dst = v
	return ok
}

func (f fields) uri(i int, dst *wamp.URI) bool {
	if i >= len(f) || f[i] == nil {
		return true
	}
	v, ok := f[i].(string)
	*dst = wamp.URI(v)
	return ok
}

func (f fields) list(i int, dst *wamp.List) bool {
	if i >= len(f) || f[i] == nil {
		return true
	}
	v, ok := f[i].([]any)
	*dst = v
	return ok
}

// maxFloatLen bounds the floats the fast path reads: ugorji counts a
// float's digits and its point's place in int8s, which wrap on longer ones
// (and then it decodes another number than the one written, as nexus
// would pass it on). Well below that, and above any float a client
// writes.
const maxFloatLen = 32

// decoder reads strict JSON into the values ugorji's JsonHandle, as nexus
// configures it, decodes into an interface: objects as map[string]any,
// arrays as []any, integers as uint64 or (negative) int64, other numbers
// as float64. Where ugorji would do something of its own (repair a lone
// surrogate, accept what JSON does not, overflow), or might (invalid
// UTF-8, which it passes on as it is), the decoder gives up instead of
// guessing.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) skipSpace() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) consume(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) value(depth int) (any, bool) {
	d.skipSpace()
	if d.i >= len(d.b) {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		d.i++
		return d.string()
	case c == '{':
		d.i++
		return d.object(depth + 1)
	case c == '[':
		d.i++
		return d.array(depth + 1)
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, false
}

func (d *decoder) literal(word string) bool {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		return false
	}
	d.i += len(word)
	return true
}

// array reads the elements of an array whose '[' is read.
func (d *decoder) array(depth int) ([]any, bool) {
	if depth > maxDepth {
		return nil, false
	}
	d.skipSpace()
	if d.consume(']') {
		return []any{}, true
	}
	v, ok := d.value(depth)
	if !ok {
		return nil, false
	}
	return d.elements([]any{v}, depth)
}

// elements reads the rest of an array after its elements in list, up to
// and with its ']'.
func (d *decoder) elements(list []any, depth int) ([]any, bool) {
	for {
		d.skipSpace()
		if d.consume(']') {
			return list, true
		}
		if !d.consume(',') {
			return nil, false
		}
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		list = append(list, v)
	}
}

// object reads the members of an object whose '{' is read.
func (d *decoder) object(depth int) (map[string]any, bool) {
	if depth > maxDepth {
		return nil, false
	}
	m := map[string]any{}
	d.skipSpace()
	if d.consume('}') {
		return m, true
	}
	for {
		d.skipSpace()
		if !d.consume('"') {
			return nil, false
		}
		k, ok := d.string()
		if _, repeated := m[k]; !ok || repeated {
			return nil, false // ugorji decodes a repeated key into the value it has
		}
		d.skipSpace()
		if !d.consume(':') {
			return nil, false
		}
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		d.skipSpace()
		if d.consume('}') {
			return m, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// string reads a string whose opening quote is read.
func (d *decoder) string() (string, bool) {
	start := d.i
	end, nonASCII := plainToDecode(d.b, d.i)
	d.i = end
	switch {
	case d.i == len(d.b) || d.b[d.i] < 0x20:
		return "", false
	case d.b[d.i] == '\\':
		return d.escaped(start, nonASCII)
	}
	s := d.b[start:d.i]
	d.i++ // the closing quote
	if nonASCII && !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// escaped reads the rest of a string from its first escape, at d.i.
func (d *decoder) escaped(start int, nonASCII bool) (string, bool) {
	out := make([]byte, 0, d.i-start+16)
	out = append(out, d.b[start:d.i]...)
	for {
		// d.i is at a quote, a backslash or a control character.
		switch {
		case d.i == len(d.b) || d.b[d.i] < 0x20:
			return "", false
		case d.b[d.i] == '"':
			d.i++
			if nonASCII && !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		}
		if d.i+1 >= len(d.b) {
			return "", false
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok || utf16.IsSurrogate(r) {
				return "", false // pairs and lone halves are ugorji's to judge
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
		runStart := d.i
		end, high := plainToDecode(d.b, d.i)
		out = append(out, d.b[runStart:end]...)
		d.i, nonASCII = end, nonASCII || high
	}
}

// hex4 reads the four hex digits of a \u escape.
func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	d.i += 4
	return r, true
}

// number reads a number in JSON's grammar.
func (d *decoder) number() (any, bool) {
	start := d.i
	neg := d.consume('-')
	intStart := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	digits := d.i - intStart
	if digits == 0 || digits > 1 && d.b[intStart] == '0' {
		return nil, false
	}
	integer := true
	if d.consume('.') {
		integer = false
		if !d.digits() {
			return nil, false
		}
	}
	if d.consume('e') || d.consume('E') {
		integer = false
		if !d.consume('+') {
			d.consume('-')
		}
		if !d.digits() {
			return nil, false
		}
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
		default:
			return nil, false
		}
	}
	if !integer {
		if d.i-start > maxFloatLen {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
		return f, err == nil
	}
	if digits > 20 {
		return nil, false // ugorji turns these into floats, or refuses them
	}
	var u uint64
	for _, c := range d.b[intStart : intStart+digits] {
		next := u*10 + uint64(c-'0')
		if u > math.MaxUint64/10 || next < u*10 {
			return nil, false // beyond 64 bits, as above
		}
		u = next
	}
	if !neg {
		return u, true
	}
	if u > 1<<63 {
		return nil, false
	}
	return -int64(u), true
}

// digits reads one or more decimal digits.
func (d *decoder) digits() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}
