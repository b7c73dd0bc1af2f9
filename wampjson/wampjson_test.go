package wampjson

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// What real clients send, and what routers send them: each of these must
// take the fast path.
var clientMessages = []string{
	`[48,1,{},"com.example.add"]`,
	`[48,7,{"receive_progress":true,"timeout":1000},"com.example.add",[1,2]]`,
	`[48,9007199254740991,{},"com.example.echo",["hello",1.5,-3,true,false,null,{"a":[1,{}]}],{"k":"v","n":0.0001}]`,
	`[48,2,{},"com.example.kw",[],{"x":1}]`,
	` [ 48 , 3 , { } , "com.example.spaces" , [ 1 , 2 ] ] `,
	"[48,4,{},\"com.example.esc\",[\"tab\\there \\\"quoted\\\" \\\\ \\/ \\u00e9\\u20ac \\b\\f\\n\\r\"]]",
	`[48,5,{},"com.example.utf8",["héllo wörld – 日本語 🎉"]]`,
	`[48,6,{},"com.example.numbers",[0,-0,1e3,1E-3,-2.5e+2,123456789012345678,-9223372036854775808,18446744073709551615]]`,
	"[48,8,{},\"com.example.mixed\",[\"日本\\n語 \\\"q\\\" \\u00E9 then a tail of plain text, longer than a word or two\"]]",
	`[70,1,{}]`,
	`[70,1,{"progress":true},["partial"]]`,
	`[70,2,{},[],{"result":[1,2,3]}]`,
	`[8,68,1,{},"wamp.error.runtime_error",["boom"]]`,
	`[8,68,1,{},"com.example.error"]`,
	`[16,1,{"acknowledge":true},"com.example.topic",["event"]]`,
	`[16,2,{},"com.example.topic"]`,
	// What a router sends them, as the proxy reads it from its upstream.
	`[50,1,{}]`,
	`[50,7,{"progress":true},["partial",1.5],{"k":[null,true]}]`,
	`[68,3,4,{}]`,
	`[68,3,4,{"timeout":1000,"procedure":"com.example.add"},[1,2],{"x":"y"}]`,
	`[36,5,6,{"topic":"com.example.topic"},["event"]]`,
	`[36,5,6,{}]`,
}

// What the fast path leaves to nexus, and must then come out as nexus's.
var otherInputs = []string{
	`[1,"realm1",{"roles":{"caller":{}}}]`,               // HELLO: another type
	`[48,1,{},"x",[1]] trailing`,                         // after the array
	`[48,1,{},"x",[01]]`,                                 // not JSON
	`[48,1,{},"x",[1.]]`,                                 // not JSON
	`[48,1,{},"x",[123456789012345678901234]]`,           // beyond 64 bits
	`[48,1,{},"x",[-9223372036854775809]]`,               // beyond int64
	`[48,1,{},"x",["\ud83d\ude00"]]`,                     // a surrogate pair
	`[48,1,{},"x",["\ud800"]]`,                           // a lone surrogate
	"[48,1,{},\"x\",[\"\xff\xfe\"]]",                     // invalid UTF-8
	"[48,1,{},\"x\",[\"a\x01b\"]]",                       // a raw control character
	"[48,1,{},\"x\",[\"a\\n then invalid UTF-8 \xc3\"]]", // after an escape
	`[48,"1",{},"x"]`,                                    // a request id that is a string
	`[48,-1,{},"x"]`,                                     // a negative request id
	`[48,1.5,{},"x"]`,                                    // a float request id
	`[48,1,[],"x"]`,                                      // options that are a list
	`[48,1,{},7]`,                                        // a procedure that is a number
	`[48,1,{},"x",{"a":1}]`,                              // arguments that are a dict
	`[48,1,{},"x",[1],[2]]`,                              // kwargs that are a list
	`[48,null,null,null,null,null]`,                      // nulls everywhere
	`[48]`,                                               // nothing but the type
	`[50,"1",{}]`,                                        // a RESULT's request id that is a string
	`[68,1,-4,{}]`,                                       // a negative registration id
	`[36,1,2,[]]`,                                        // EVENT details that are a list
	`[8,null,1,null,"x"]`,                                // an ERROR's defaults
	`[48,1,{},"x",[1],{"a":1},"extra"]`,                  // more than the fields
	`[48,1,{"a":1,"a":2},"x"]`,                           // a repeated key
	`[]`,                                                 // empty
	`[-48,1,{},"x"]`,                                     // a negative type
	`{"48":1}`,                                           // not a list
	``,                                                   // nothing
	`[48,1,{},"x",[` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `]]`, // deep
	// ugorji's readFloat (decimal.go) counts digits and the decimal point's
	// place in int8s, which wrap on long numbers: then its exact fast path
	// takes a wrong exponent, and nexus decodes a number other than the
	// one written (here 1e37, 0.1, -0.5, 0.4503599627370495).
	`[48,1,{},"x",[0.` + strings.Repeat("0", 218) + `1]]`,                // nexus: 1e37, not 1e-219
	`[48,1,{},"x",[0.` + strings.Repeat("0", 119) + `1e-99]]`,            // nexus: 1e37, not 1e-219
	`[70,1,{},[0.` + strings.Repeat("0", 256) + `1]]`,                    // nexus: 0.1, not 1e-257
	`[16,1,{"n":-0.` + strings.Repeat("0", 256) + `5},"t"]`,              // nexus: -0.5, not -5e-257
	`[48,1,{},"x",[4503599627370495` + strings.Repeat("0", 256) + `e0]]`, // nexus: 0.4503599627370495, not 4.5e271
}

func TestTheMessagesClientsSendAreDecodedAsNexusDoesWithoutIt(t *testing.T) {
	for _, in := range clientMessages {
		if _, ok := decodeFast([]byte(in)); !ok {
			t.Errorf("%s: not on the fast path", in)
		}
		assertDecodedAsByNexus(t, []byte(in))
	}
}

func TestWhatTheFastPathLeavesIsDecodedByNexus(t *testing.T) {
	for _, in := range otherInputs {
		assertDecodedAsByNexus(t, []byte(in))
	}
}

func FuzzDecodingIsNexuss(f *testing.F) {
	for _, in := range append(clientMessages, otherInputs...) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) { assertDecodedAsByNexus(t, data) })
}

// assertDecodedAsByNexus: our Deserialize fails where nexus's does, and
// gives what nexus gives, types of every value included.
func assertDecodedAsByNexus(t *testing.T, data []byte) {
	t.Helper()
	var nexus serialize.JSONSerializer
	want, wantErr := nexus.Deserialize(data)
	var ours Serializer
	got, err := ours.Deserialize(data)
	if (err != nil) != (wantErr != nil) {
		t.Errorf("%q: error %v, nexus's %v", data, err, wantErr)
		return
	}
	if !same(reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Errorf("%q:\n got   %#v\n nexus %#v", data, got, want)
	}
}

// Values nexus hands the serializer on the way out, beyond what JSON
// decodes to.
var sentValues = []any{
	nil, "", "plain", "quote \" backslash \\ <html> & co", "\t\n\r\b\f\x00\x1f\x7f",
	"héllo – 日本語 🎉", "\u2028\u2029", "bad \xff utf8 \xe2\x82", true, false,
	0, 1, -1, int64(math.MinInt64), uint64(math.MaxUint64), wamp.ID(42), wamp.URI("com.example"),
	0.0, 1.0, -1.0, 0.5, -2.25, 1e-7, 1e21, 1e20, 123456.789, math.MaxFloat64, math.SmallestNonzeroFloat64,
	math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1),
	[]any{}, []any(nil), wamp.List{1, "a"}, map[string]any{}, map[string]any(nil),
	wamp.Dict{"k": []any{1, map[string]any{"n": nil}}},
}

func TestTheMessagesTheRouterSendsAreEncodedAsNexusDoes(t *testing.T) {
	for _, v := range sentValues {
		for _, msg := range []wamp.Message{
			&wamp.Result{Request: 1, Details: wamp.Dict{}, Arguments: wamp.List{v}},
			&wamp.Result{Request: 2, Details: wamp.Dict{"v": v}, ArgumentsKw: wamp.Dict{"v": v}},
			&wamp.Invocation{Request: 3, Registration: 4, Details: wamp.Dict{}, Arguments: wamp.List{v, v}},
			&wamp.Event{Subscription: 5, Publication: 6, Details: wamp.Dict{}, Arguments: wamp.List{v}},
			&wamp.Error{Type: wamp.CALL, Request: 7, Details: wamp.Dict{}, Error: "wamp.error.runtime_error", Arguments: wamp.List{v}},
		} {
			assertEncodedAsByNexus(t, msg)
		}
	}
	for _, msg := range []wamp.Message{
		&wamp.Result{Request: 1, Details: wamp.Dict{}},
		&wamp.Result{Request: 1},                                               // nil details
		&wamp.Result{Request: 1, Details: wamp.Dict{}, Arguments: wamp.List{}}, // empty, left out
		&wamp.Result{Request: 1, Details: wamp.Dict{}, ArgumentsKw: wamp.Dict{"a": 1}},
		&wamp.Result{Request: 1, Details: wamp.Dict{}, Arguments: wamp.List{}, ArgumentsKw: wamp.Dict{"a": 1}},
		&wamp.Invocation{Request: math.MaxUint64, Registration: 1 << 53, Details: wamp.Dict{"procedure": "a.b"}},
		&wamp.Error{Type: wamp.INVOCATION, Request: 1, Details: wamp.Dict{}, Error: "wamp.error.canceled"},
		&wamp.Published{Request: 1, Publication: 2},
	} {
		assertEncodedAsByNexus(t, msg)
	}
}

func TestValuesOfOtherTypesAreLeftToNexus(t *testing.T) {
	for _, v := range []any{float32(1.5), []string{"a"}, []wamp.ID{1}, int32(3), uint8(4), struct{ A int }{1}, []byte("x")} {
		msg := &wamp.Result{Request: 1, Details: wamp.Dict{}, Arguments: wamp.List{v}}
		if _, ok := encodeFast(msg); ok {
			t.Errorf("%T: on the fast path", v)
		}
		assertEncodedAsByNexus(t, msg)
	}
	for _, msg := range []wamp.Message{
		&wamp.Welcome{ID: 1, Details: wamp.Dict{"roles": wamp.Dict{}}},
		&wamp.Registered{Request: 1, Registration: 2},
	} {
		if _, ok := encodeFast(msg); ok {
			t.Errorf("%T: on the fast path", msg)
		}
	}
}

func FuzzEncodingIsNexuss(f *testing.F) {
	for _, in := range clientMessages {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever nexus decodes from a client is what it may send on.
		var v any
		var nexus serialize.JSONSerializer
		if nexus.DeserializeDataItem(data, &v) != nil {
			return
		}
		assertEncodedAsByNexus(t, &wamp.Result{Request: 1, Details: wamp.Dict{"v": v}, Arguments: wamp.List{v}})
	})
}

// assertEncodedAsByNexus: our bytes decode to what nexus's do, and are
// nexus's bytes whenever the order of map members cannot differ.
func assertEncodedAsByNexus(t *testing.T, msg wamp.Message) {
	t.Helper()
	var nexus serialize.JSONSerializer
	want, wantErr := nexus.Serialize(msg)
	var ours Serializer
	got, err := ours.Serialize(msg)
	if (err != nil) != (wantErr != nil) {
		t.Errorf("%#v: error %v, nexus's %v", msg, err, wantErr)
		return
	}
	if err != nil {
		return
	}
	var gotV, wantV any
	if err := nexus.DeserializeDataItem(got, &gotV); err != nil {
		t.Fatalf("%#v: ours %s does not decode: %v", msg, got, err)
	}
	if err := nexus.DeserializeDataItem(want, &wantV); err != nil {
		t.Fatalf("%#v: nexus's %s does not decode: %v", msg, want, err)
	}
	if !same(reflect.ValueOf(gotV), reflect.ValueOf(wantV)) {
		t.Errorf("%#v:\n got   %s\n nexus %s", msg, got, want)
		return
	}
	if !hasLargeMap(reflect.ValueOf(msg)) && string(got) != string(want) {
		t.Errorf("%#v:\n got   %s\n nexus %s", msg, got, want)
	}
}

// same is reflect.DeepEqual but for floats, which must have the same
// bits: 0.0 and -0.0 differ, and a NaN is the same as itself.
func same(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return same(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !same(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !same(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			v := b.MapIndex(it.Key())
			if !v.IsValid() || !same(it.Value(), v) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// hasLargeMap: somewhere in v is a map of more than one member, whose
// order Go does not fix.
func hasLargeMap(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasLargeMap(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if hasLargeMap(v.Field(i)) {
				return true
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if hasLargeMap(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		if v.Len() > 1 {
			return true
		}
		for it := v.MapRange(); it.Next(); {
			if hasLargeMap(it.Value()) {
				return true
			}
		}
	}
	return false
}
