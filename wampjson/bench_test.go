package wampjson

import (
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
)

// The serializers side by side on what an RPC is made of: the CALL and
// YIELD the router decodes, the INVOCATION and RESULT it encodes (and,
// as a proxy, decodes from its upstream), with small arguments and with a
// 10 KiB string.
func BenchmarkDeserialize(b *testing.B) {
	inputs := []struct{ name, json string }{
		{"call", `[48,1234,{},"com.example.add",[1,2,"three"],{"k":1.5}]`},
		{"yield", `[70,1234,{},[3]]`},
		{"invocation", `[68,99,12345,{},[1,2,"three"],{"k":1.5}]`},
		{"result", `[50,1234,{},[3]]`},
		{"call_10KiB", `[48,1234,{},"com.example.echo",["` + strings.Repeat("x", 10<<10) + `"]]`},
	}
	serializers := []struct {
		name string
		s    serialize.Serializer
	}{{"nexus", &serialize.JSONSerializer{}}, {"wampjson", &Serializer{}}}
	for _, in := range inputs {
		for _, s := range serializers {
			b.Run(in.name+"/"+s.name, func(b *testing.B) {
				data := []byte(in.json)
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, err := s.s.Deserialize(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkSerialize(b *testing.B) {
	inputs := []struct {
		name string
		msg  wamp.Message
	}{
		{"invocation", &wamp.Invocation{Request: 99, Registration: 12345, Details: wamp.Dict{}, Arguments: wamp.List{uint64(1), uint64(2), "three"}, ArgumentsKw: wamp.Dict{"k": 1.5}}},
		{"result", &wamp.Result{Request: 1234, Details: wamp.Dict{}, Arguments: wamp.List{uint64(3)}}},
		{"result_10KiB", &wamp.Result{Request: 1234, Details: wamp.Dict{}, Arguments: wamp.List{strings.Repeat("x", 10<<10)}}},
	}
	serializers := []struct {
		name string
		s    serialize.Serializer
	}{{"nexus", &serialize.JSONSerializer{}}, {"wampjson", &Serializer{}}}
	for _, in := range inputs {
		for _, s := range serializers {
			b.Run(in.name+"/"+s.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.s.Serialize(in.msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
