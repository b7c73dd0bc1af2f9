package wampjson

import "encoding/binary"

// Strings are most of a large message's bytes, and most strings need no
// escape either way: these find the end of a run of such bytes eight at a
// time (a byte-at-a-time loop was slower than ugorji on 10 KiB strings).
// Each test below says whether some byte of a word is special; the byte
// loop after it then finds which.

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plainToDecode returns the index of the first byte of s at or after i
// that is a control character, '"' or '\\', or len(s); and whether a byte
// before it is non-ASCII (to be checked as UTF-8 once, at the end).
func plainToDecode(s []byte, i int) (int, bool) {
	var seen uint64
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		q := x ^ ones*'"'
		b := x ^ ones*'\\'
		if ((x-ones*0x20)&^x|(q-ones)&^q|(b-ones)&^b)&highs != 0 {
			break
		}
		seen |= x
	}
	nonASCII := seen&highs != 0
	for ; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' {
			break
		}
		nonASCII = nonASCII || c >= 0x80
	}
	return i, nonASCII
}

// plainToEncode returns the index of the first byte of s at or after i
// that ugorji escapes or looks at (control characters, non-ASCII, '"',
// '\\', '<', '>' and '&'), or len(s). It takes bytes, not the string:
// binary.LittleEndian loads eight bytes of a slice at once, while the
// same expression over a string's bytes compiled to eight loads and was
// half as fast; the encoder appends the string and looks at it there.
func plainToEncode(s []byte, i int) int {
	for ; i+8 <= len(s); i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		q := x ^ ones*'"'
		b := x ^ ones*'\\'
		l := x ^ ones*'<'
		g := x ^ ones*'>'
		a := x ^ ones*'&'
		if (x|(x-ones*0x20)&^x|(q-ones)&^q|(b-ones)&^b|(l-ones)&^l|(g-ones)&^g|(a-ones)&^a)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return i
		}
	}
	return i
}
