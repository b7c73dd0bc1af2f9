package wampjson

import (
	"strings"
	"testing"
)

// The scans over a 10 KiB string that needs no escape.
func BenchmarkPlainRun(b *testing.B) {
	s := []byte(strings.Repeat("x", 10<<10))
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if i, _ := plainToDecode(s, 0); i != len(s) {
				b.Fatal(i)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if i := plainToEncode(s, 0); i != len(s) {
				b.Fatal(i)
			}
		}
	})
}
