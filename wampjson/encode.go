package wampjson

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/gammazero/nexus/v3/wamp"
)

// encodeFast encodes the messages the router sends on the hot path
// (RESULT, INVOCATION, EVENT, ERROR, PUBLISHED) as nexus's JSONSerializer
// does: the same elements, the same bytes but for the order of an
// object's members (nexus's is Go's map order). ok is false for any other
// message, or a value of a type it does not write itself.
func encodeFast(msg wamp.Message) ([]byte, bool) {
	e := encoder{b: make([]byte, 0, 128)}
	e.b = append(e.b, '[')
	e.b = strconv.AppendInt(e.b, int64(msg.MessageType()), 10)
	ok := true
	switch m := msg.(type) {
	case *wamp.Result:
		e.id(m.Request)
		ok = e.dict(m.Details) && e.payload(m.Arguments, m.ArgumentsKw)
	case *wamp.Invocation:
		e.id(m.Request)
		e.id(m.Registration)
		ok = e.dict(m.Details) && e.payload(m.Arguments, m.ArgumentsKw)
	case *wamp.Event:
		e.id(m.Subscription)
		e.id(m.Publication)
		ok = e.dict(m.Details) && e.payload(m.Arguments, m.ArgumentsKw)
	case *wamp.Error:
		e.b = append(e.b, ',')
		e.b = strconv.AppendInt(e.b, int64(m.Type), 10)
		e.id(m.Request)
		ok = e.dict(m.Details)
		e.b = append(e.b, ',')
		e.string(string(m.Error))
		ok = ok && e.payload(m.Arguments, m.ArgumentsKw)
	case *wamp.Published:
		e.id(m.Request)
		e.id(m.Publication)
	default:
		return nil, false
	}
	e.b = append(e.b, ']')
	return e.b, ok
}

type encoder struct {
	b     []byte
	depth int
}

func (e *encoder) id(v wamp.ID) {
	e.b = append(e.b, ',')
	e.b = strconv.AppendUint(e.b, uint64(v), 10)
}

// dict writes a field that is always there.
func (e *encoder) dict(d wamp.Dict) bool {
	e.b = append(e.b, ',')
	return e.object(d)
}

// payload writes a message's trailing arguments as nexus's msgToList
// does: the trailing ones that are empty are left out, and a list before
// keyword arguments is written even when empty (nil: null).
func (e *encoder) payload(args wamp.List, kw wamp.Dict) bool {
	if len(kw) == 0 {
		if len(args) == 0 {
			return true
		}
		e.b = append(e.b, ',')
		return e.array(args)
	}
	e.b = append(e.b, ',')
	if !e.array(args) {
		return false
	}
	e.b = append(e.b, ',')
	return e.object(kw)
}

func (e *encoder) value(v any) bool {
	switch v := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case string:
		e.string(v)
	case bool:
		e.b = strconv.AppendBool(e.b, v)
	case uint64:
		e.b = strconv.AppendUint(e.b, v, 10)
	case int64:
		e.b = strconv.AppendInt(e.b, v, 10)
	case int:
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	case float64:
		e.float(v)
	case []any:
		return e.array(v)
	case map[string]any:
		return e.object(v)
	case wamp.List:
		return e.array(v)
	case wamp.Dict:
		return e.object(v)
	case wamp.ID:
		e.b = strconv.AppendUint(e.b, uint64(v), 10)
	case wamp.URI:
		e.string(string(v))
	default:
		return false // nexus's serializer knows more types
	}
	return true
}

func (e *encoder) array(list []any) bool {
	if list == nil {
		e.b = append(e.b, "null"...)
		return true
	}
	if e.depth++; e.depth > maxDepth {
		return false
	}
	e.b = append(e.b, '[')
	for i, v := range list {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if !e.value(v) {
			return false
		}
	}
	e.b = append(e.b, ']')
	e.depth--
	return true
}

func (e *encoder) object(m map[string]any) bool {
	if m == nil {
		e.b = append(e.b, "null"...)
		return true
	}
	if e.depth++; e.depth > maxDepth {
		return false
	}
	e.b = append(e.b, '{')
	first := true
	for k, v := range m {
		if !first {
			e.b = append(e.b, ',')
		}
		first = false
		e.string(k)
		e.b = append(e.b, ':')
		if !e.value(v) {
			return false
		}
	}
	e.b = append(e.b, '}')
	e.depth--
	return true
}

// float writes a float64 as ugorji does: NaN and infinities as null,
// whole numbers below 2⁵² with ".0", exponents only below 1e-6 and from 1e21.
func (e *encoder) float(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		e.b = append(e.b, "null"...)
		return
	}
	format, prec := byte('f'), -1
	switch abs := math.Abs(f); {
	case abs == 0 || abs == 1:
		prec = 1
	case abs < 1e-6 || abs >= 1e21:
		format = 'e'
	case wholeBelow2to52(f):
		prec = 1
	}
	e.b = strconv.AppendFloat(e.b, f, format, prec, 64)
}

// wholeBelow2to52: f has no fraction and is below 2⁵² in magnitude, the
// test ugorji uses for writing ".0" (larger whole numbers go without).
func wholeBelow2to52(f float64) bool {
	bits := math.Float64bits(f)
	exp := (bits>>52)&0x7FF - 1023 // wraps for |f| < 1: not below 52
	return exp < 52 && bits<<(12+exp) == 0
}

const hexDigits = "0123456789abcdef"

// string writes a quoted string escaped as ugorji does: control
// characters, '"', '\\', and '<', '>', '&' (it escapes HTML's too), each
// byte of invalid UTF-8 as \uFFFD, and U+2028 and U+2029.
func (e *encoder) string(s string) {
	e.b = append(e.b, '"')
	// Most strings need no escape: copied at once, and looked at where
	// they landed; from the first byte that may, written as it goes.
	at := len(e.b)
	e.b = append(e.b, s...)
	i := plainToEncode(e.b, at) - at
	if i == len(s) {
		e.b = append(e.b, '"')
		return
	}
	e.b = e.b[:at+i]
	start := i
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			e.b = append(e.b, s[start:i]...)
			switch c {
			case '\\', '"':
				e.b = append(e.b, '\\', c)
			case '\n':
				e.b = append(e.b, '\\', 'n')
			case '\t':
				e.b = append(e.b, '\\', 't')
			case '\r':
				e.b = append(e.b, '\\', 'r')
			case '\b':
				e.b = append(e.b, '\\', 'b')
			case '\f':
				e.b = append(e.b, '\\', 'f')
			default:
				e.b = append(e.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, `\uFFFD`...)
		case r == '\u2028' || r == '\u2029':
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}
