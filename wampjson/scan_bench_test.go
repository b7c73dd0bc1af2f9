package wampjson

import (
	"strings"
	"testing"
)

func BenchmarkPlainRun(b *testing.B) {
	s := strings.Repeat("x", 10<<10)
	bs := []byte(s)
	b.Run("string", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if plainToEncode([]byte(s), 0) != len(s) {
				b.Fatal()
			}
		}
	})
	b.Run("bytes", func(b *testing.B) {
		b.SetBytes(int64(len(s)))
		for b.Loop() {
			if plainToDecode(bs, 0) != len(s) {
				b.Fatal()
			}
		}
	})
}
