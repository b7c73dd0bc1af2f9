package wamplog

import (
	"unicode/utf8"
)

// jsonScanner reads just enough JSON to pick fields out of a log line,
// without building values and, once its scratch buffer has grown, without
// allocating. Strings without escapes are returned as slices of the input;
// strings with escapes are unescaped into scratch, which is only ever
// appended to between resets, so every slice returned stays valid until the
// next reset.
type jsonScanner struct {
	b       []byte
	pos     int
	scratch []byte
}

// maxJSONDepth bounds nesting in skipped values: deep nesting is an attack,
// not a log line.
const maxJSONDepth = 64

func (s *jsonScanner) reset(b []byte) {
	s.b, s.pos, s.scratch = b, 0, s.scratch[:0]
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (s *jsonScanner) peek() byte {
	s.skipSpace()
	if s.pos < len(s.b) {
		return s.b[s.pos]
	}
	return 0
}

// eat consumes c if it is the next non-space byte.
func (s *jsonScanner) eat(c byte) bool {
	if s.peek() == c {
		s.pos++
		return true
	}
	return false
}

// atEnd tells whether only space is left.
func (s *jsonScanner) atEnd() bool { return s.peek() == 0 && s.pos == len(s.b) }

// str reads a string value. ok is false if the next value is not a valid
// string; valid JSON strings may still hold invalid UTF-8, which callers
// check where it matters.
func (s *jsonScanner) str() (v []byte, ok bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.pos
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.pos = i + 1
			return s.b[start:i], true
		case c == '\\':
			return s.strEscaped(start)
		case c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (s *jsonScanner) strEscaped(start int) ([]byte, bool) {
	from := len(s.scratch)
	i := start
	for i < len(s.b) {
		// Copy the run of plain bytes up to the next quote, backslash or
		// control character in one go.
		run := i
		for run < len(s.b) && s.b[run] != '"' && s.b[run] != '\\' && s.b[run] >= 0x20 {
			run++
		}
		s.scratch = append(s.scratch, s.b[i:run]...)
		if i = run; i >= len(s.b) {
			break
		}
		switch c := s.b[i]; {
		case c == '"':
			s.pos = i + 1
			return s.scratch[from:], true
		case c < 0x20:
			return nil, false
		}
		if i+1 >= len(s.b) {
			return nil, false
		}
		switch e := s.b[i+1]; e {
		case '"', '\\', '/':
			s.scratch = append(s.scratch, e)
		case 'b':
			s.scratch = append(s.scratch, '\b')
		case 'f':
			s.scratch = append(s.scratch, '\f')
		case 'n':
			s.scratch = append(s.scratch, '\n')
		case 'r':
			s.scratch = append(s.scratch, '\r')
		case 't':
			s.scratch = append(s.scratch, '\t')
		case 'u':
			r, n := s.unicodeEscape(i)
			if n == 0 {
				return nil, false
			}
			s.scratch = utf8.AppendRune(s.scratch, r)
			i += n
			continue
		default:
			return nil, false
		}
		i += 2
	}
	return nil, false
}

// unicodeEscape decodes \uXXXX at i, with a following low surrogate when
// the first is a high one. It returns the rune and the bytes consumed, or
// n == 0 when malformed. Lone surrogates become U+FFFD, as in encoding/json.
func (s *jsonScanner) unicodeEscape(i int) (r rune, n int) {
	r1, ok := hex4(s.b, i+2)
	if !ok {
		return 0, 0
	}
	if r1 < 0xD800 || r1 > 0xDFFF {
		return r1, 6
	}
	if r1 <= 0xDBFF && i+12 <= len(s.b) && s.b[i+6] == '\\' && s.b[i+7] == 'u' {
		if r2, ok := hex4(s.b, i+8); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
			return ((r1 - 0xD800) << 10) + (r2 - 0xDC00) + 0x10000, 12
		}
	}
	return utf8.RuneError, 6
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[at : at+4] {
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
	return r, true
}

// numberKind tells what a number token turned out to be.
type numberKind uint8

const (
	notNumber   numberKind = iota
	unsignedInt            // digits only, fits in uint64
	otherNumber            // negative, fraction, exponent or too large
)

// uint reads a number. Only a plain non-negative integer that fits in a
// uint64 is returned as a value; any other valid number is reported as
// otherNumber (and consumed).
func (s *jsonScanner) uint() (uint64, numberKind) {
	s.skipSpace()
	start := s.pos
	if !s.skipNumber() {
		return 0, notNumber
	}
	tok := s.b[start:s.pos]
	if len(tok) > 1 && tok[0] == '0' {
		return 0, otherNumber // JSON forbids leading zeros; skipNumber allows "0"
	}
	var v uint64
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, otherNumber
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, otherNumber
		}
		v = v*10 + d
	}
	return v, unsignedInt
}

// skipNumber consumes a JSON number token.
func (s *jsonScanner) skipNumber() bool {
	i := s.pos
	if i < len(s.b) && s.b[i] == '-' {
		i++
	}
	i, ok := s.digits(i)
	if !ok {
		return false
	}
	if i < len(s.b) && s.b[i] == '.' {
		if i, ok = s.digits(i + 1); !ok {
			return false
		}
	}
	if i < len(s.b) && (s.b[i] == 'e' || s.b[i] == 'E') {
		i++
		if i < len(s.b) && (s.b[i] == '+' || s.b[i] == '-') {
			i++
		}
		if i, ok = s.digits(i); !ok {
			return false
		}
	}
	s.pos = i
	return true
}

// digits skips the digits from i; ok is false when there are none.
func (s *jsonScanner) digits(i int) (int, bool) {
	start := i
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	return i, i > start
}

// skip consumes one value of any type.
func (s *jsonScanner) skip() bool { return s.skipDepth(0) }

func (s *jsonScanner) skipDepth(depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '[':
		s.pos++
		if s.eat(']') {
			return true
		}
		for {
			if !s.skipDepth(depth + 1) {
				return false
			}
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == '{':
		s.pos++
		if s.eat('}') {
			return true
		}
		for {
			if _, ok := s.str(); !ok || !s.eat(':') || !s.skipDepth(depth+1) {
				return false
			}
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		return s.skipNumber()
	default:
		return s.literal("true") || s.literal("false") || s.literal("null")
	}
}

func (s *jsonScanner) literal(word string) bool {
	if len(s.b)-s.pos >= len(word) && string(s.b[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// object walks the members of an object, calling member for each key with
// the scanner positioned at the value; member must consume the value (or
// call skip). It returns false if the next value is not a valid object.
func (s *jsonScanner) object(member func(key []byte) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.eat(':') || !member(key) {
			return false
		}
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// stringMember reads an object and returns the value of its member key
// when that is a string; v is nil when the member is absent or of another
// type. ok is false if the next value is not a valid object.
func (s *jsonScanner) stringMember(key string) (v []byte, ok bool) {
	ok = s.object(func(k []byte) bool {
		if string(k) != key {
			return s.skip()
		}
		if str, isStr := s.str(); isStr {
			v = str
			return true
		}
		return s.skip()
	})
	return v, ok
}
