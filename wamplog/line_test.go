package wamplog

import (
	"strings"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

func TestParseGoodLines(t *testing.T) {
	p := newLineParser()
	v1ID := func(id string) uint64 { // what parse makes of a v1 string id
		var l logLine
		if r := p.parse([]byte(testkit.LogLine("wamp", "in", `[3,"`+id+`",{}]`)), &l); r != "" {
			t.Fatal(r)
		}
		return l.id
	}
	for _, tc := range []struct {
		name, line string
		want       logLine
	}{
		{"v2 call", testkit.LogLine("wamp", "out", `[48,1,{"timeout":300},"hello3",["hello world 1"]]`),
			logLine{kind: kindCall, view: callerView, id: 1, procedure: []byte("hello3"), timeout: 300 * time.Millisecond}},
		{"v2 call without options content", testkit.LogLine("wamp", "out", `[48,9007199254740992,{},"com.example.add"]`),
			logLine{kind: kindCall, id: 1 << 53, procedure: []byte("com.example.add")}},
		{"v2 call, timeout 0 is none", testkit.LogLine("wamp", "out", `[48,2,{"timeout":0,"x":[1,{"y":null}]},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p")}},
		{"v2 call, non-number timeout ignored", testkit.LogLine("wamp", "out", `[48,2,{"timeout":"300"},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p")}},
		{"v2 call, fractional timeout in whole milliseconds", testkit.LogLine("wamp", "out", `[48,2,{"timeout":1500.7},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p"), timeout: 1500 * time.Millisecond}},
		{"v2 call, negative timeout ignored", testkit.LogLine("wamp", "out", `[48,2,{"timeout":-5},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p")}},
		// As the router reads it (wamp.AsInt64, then wampcall.Timeout): a
		// timeout too long for a Duration is the longest one, not none; a
		// uint64 beyond an int64 wraps to a negative one, none, as for the
		// dealer (TestTimeoutsReadAsTheDealerReadsThem).
		{"v2 call, huge timeout clamped", testkit.LogLine("wamp", "out", `[48,2,{"timeout":9223372036854775807},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p"), timeout: 9223372036854 * time.Millisecond}},
		{"v2 call, timeout beyond an int64 is none", testkit.LogLine("wamp", "out", `[48,2,{"timeout":18446744073709551615},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p")}},
		{"v2 call, timeout below a millisecond is none", testkit.LogLine("wamp", "out", `[48,2,{"timeout":0.5},"p"]`),
			logLine{kind: kindCall, id: 2, procedure: []byte("p")}},
		{"v2 result", testkit.LogLine("wamp", "out", `[50,7,{},["Hello"]]`), logLine{kind: kindResult, id: 7}},
		{"v2 progressive result", testkit.LogLine("wamp", "out", `[50,7,{"progress":true},[1]]`), logLine{kind: kindIgnored}},
		{"v2 result with progress false", testkit.LogLine("wamp", "out", `[50,7,{"progress":false}]`), logLine{kind: kindResult, id: 7}},
		{"v2 error for a call", testkit.LogLine("wamp", "out", `[8,48,7,{},"wamp.error.timeout",[]]`),
			logLine{kind: kindError, view: callerView, id: 7, errorURI: []byte("wamp.error.timeout")}},
		{"v2 error for an invocation", testkit.LogLine("wamp", "in", `[8,68,5,{},"app.error.hello"]`),
			logLine{kind: kindError, view: calleeView, id: 5, errorURI: []byte("app.error.hello")}},
		{"v2 error for a register", testkit.LogLine("wamp", "in", `[8,64,5,{},"wamp.error.procedure_already_exists"]`), logLine{kind: kindIgnored}},
		{"v2 invocation", testkit.LogLine("wamp", "in", `[68,5,77,{"procedure":"hello2"},["x"]]`),
			logLine{kind: kindInvocation, view: calleeView, id: 5, registration: 77, procedure: []byte("hello2")}},
		{"v2 invocation with a forwarded timeout", testkit.LogLine("wamp", "in", `[68,5,77,{"timeout":1000,"procedure":"hello2"}]`),
			logLine{kind: kindInvocation, view: calleeView, id: 5, registration: 77, procedure: []byte("hello2"), timeout: time.Second}},
		{"v2 invocation without procedure", testkit.LogLine("wamp", "in", `[68,5,77,{}]`),
			logLine{kind: kindInvocation, view: calleeView, id: 5, registration: 77}},
		{"v2 yield", testkit.LogLine("wamp", "in", `[70,5,{},["Hello"]]`), logLine{kind: kindYield, view: calleeView, id: 5}},
		{"v2 progressive yield", testkit.LogLine("wamp", "in", `[70,5,{"progress":true}]`), logLine{kind: kindIgnored}},
		{"v2 interrupt", testkit.LogLine("wamp", "in", `[69,5,{"mode":"killnowait","reason":"wamp.error.timeout"}]`),
			logLine{kind: kindInterrupt, view: calleeView, id: 5, errorURI: []byte("wamp.error.timeout")}},
		{"v2 register", testkit.LogLine("wamp", "in", `[64,1,{},"hello1"]`), logLine{kind: kindRegister, view: calleeView, id: 1, procedure: []byte("hello1")}},
		{"v2 pattern register", testkit.LogLine("wamp", "in", `[64,1,{"match":"prefix"},"com."]`), logLine{kind: kindIgnored}},
		{"v2 registered", testkit.LogLine("wamp", "in", `[65,1,4242]`), logLine{kind: kindRegistered, view: calleeView, id: 1, registration: 4242}},
		{"v2 hello", testkit.LogLine("wamp", "out", `[1,"realm1",{"roles":{}}]`), logLine{kind: kindIgnored}},
		{"v2 welcome", testkit.LogLine("wamp", "out", `[2,123,{}]`), logLine{kind: kindIgnored}},
		{"v2 goodbye", testkit.LogLine("wamp", "out", `[6,{},"wamp.close.close_realm"]`), logLine{kind: kindIgnored}},
		{"v1 call", testkit.LogLine("wamp", "in", `[2,"5f1a2b3c",“hello4”]`), logLine{}}, // replaced below
		{"escaped procedure", testkit.LogLine("wamp", "out", `[48,3,{},"caf\u00e9.\ud83d\ude00"]`),
			logLine{kind: kindCall, id: 3, procedure: []byte("café.😀")}},
		{"spaces and CRLF", ` [ "wamp" , "out" , "[48, 4, {}, \"p\"]" ] ` + "\r",
			logLine{kind: kindCall, id: 4, procedure: []byte("p")}},
		{"legacy colon format", `wamp:in:[2,"abc","hello5",{"msg":"x"}]`,
			logLine{kind: kindCall, id: v1ID("abc"), procedure: []byte("hello5")}},
	} {
		if tc.name == "v1 call" {
			tc.line = testkit.LogLine("wamp", "in", `[2,"5f1a2b3c","hello4",{"msg":"hello world 1 details"}]`)
			tc.want = logLine{kind: kindCall, id: v1ID("5f1a2b3c"), procedure: []byte("hello4")}
		}
		t.Run(tc.name, func(t *testing.T) {
			var got logLine
			if r := p.parse([]byte(tc.line), &got); r != "" {
				t.Fatalf("rejected %s as %s", tc.line, r)
			}
			if string(got.protocol) != "wamp" || (string(got.direction) != "in" && string(got.direction) != "out") {
				t.Errorf("names %q %q", got.protocol, got.direction)
			}
			if got.kind != tc.want.kind || (tc.want.kind != kindIgnored && (got.view != tc.want.view || got.id != tc.want.id ||
				string(got.procedure) != string(tc.want.procedure) || got.timeout != tc.want.timeout ||
				string(got.errorURI) != string(tc.want.errorURI) || got.registration != tc.want.registration)) {
				t.Errorf("parsed %s\n got %+v\nwant %+v", tc.line, got, tc.want)
			}
		})
	}
}

func TestV1IDsAreStableAndApartFromV2(t *testing.T) {
	p := newLineParser()
	var a, b, c logLine
	p.parse([]byte(testkit.LogLine("wamp", "in", `[2,"id-1","hello1"]`)), &a)
	p.parse([]byte(testkit.LogLine("wamp", "in", `[3,"id-1",{"msg":"reply"}]`)), &b)
	p.parse([]byte(testkit.LogLine("wamp", "in", `[4,"id-2","app.error","description"]`)), &c)
	if a.id != b.id || a.id == c.id {
		t.Errorf("ids: call %x result %x other %x", a.id, b.id, c.id)
	}
	if a.id <= maxRequestID {
		t.Errorf("v1 id %x overlaps the v2 id space", a.id)
	}
	if c.kind != kindError || string(c.errorURI) != "app.error" {
		t.Errorf("v1 error parsed as %+v", c)
	}
}

// A type-4 frame with a string id is a v1 error whatever its third
// element, as the original aggregator reads it: its own writer logs an
// object there. Without a URI, the error URI is MissingErrorURI.
func TestV1ErrorFramesWithoutAnErrorURI(t *testing.T) {
	p := newLineParser()
	for _, tc := range []struct{ msg, uri string }{
		{`[4,"5f1a2b3c4d5e6",{"msg":"hello world1 error details"}]`, MissingErrorURI},
		{`[4,"5f1a2b3c4d5e6","app.error.hello","details"]`, "app.error.hello"},
		{`[4,"5f1a2b3c4d5e6",["a"]]`, MissingErrorURI},
		{`[4,"5f1a2b3c4d5e6",5]`, MissingErrorURI},
		{`[4,"5f1a2b3c4d5e6"]`, MissingErrorURI},
		{"[4,\"5f1a2b3c4d5e6\",\"app.\xff\"]", MissingErrorURI},
	} {
		var call, answer logLine
		p.parse([]byte(testkit.LogLine("wamp", "in", `[2,"5f1a2b3c4d5e6","hello1"]`)), &call)
		// Byte for byte: LogLine would turn the invalid UTF-8 into U+FFFD.
		if r := p.parse(wrapJSONLine("wamp", "in", []byte(tc.msg)), &answer); r != "" {
			t.Errorf("%s: refused as %s", tc.msg, r)
			continue
		}
		if answer.kind != kindError || answer.id != call.id || string(answer.errorURI) != tc.uri {
			t.Errorf("%s: kind %d id %x (call %x) error URI %q, want an error for the call with %q",
				tc.msg, answer.kind, answer.id, call.id, answer.errorURI, tc.uri)
		}
	}
}

func TestParseBadLines(t *testing.T) {
	p := newLineParser()
	long := strings.Repeat("a", 33)
	for _, tc := range []struct {
		name, line, reason string
	}{
		{"empty", ``, ReasonNotJSON},
		{"not json", `hello world`, ReasonNotJSON},
		{"object", `{"protocol":"wamp"}`, ReasonNotJSON},
		{"two elements", `["wamp","in"]`, ReasonNotJSON},
		{"four elements, the fourth a string", `["wamp","in","[48,1,{},\"p\"]","x"]`, ReasonBadTime},
		{"a time with a fraction", `["wamp","in","[48,1,{},\"p\"]",1.5]`, ReasonBadTime},
		{"a time in exponent form", `["wamp","in","[48,1,{},\"p\"]",1e9]`, ReasonBadTime},
		{"a negative time", `["wamp","in","[48,1,{},\"p\"]",-1]`, ReasonBadTime},
		{"a time over MaxInt64", `["wamp","in","[48,1,{},\"p\"]",9223372036854775808]`, ReasonBadTime},
		{"a time that is an object", `["wamp","in","[48,1,{},\"p\"]",{}]`, ReasonBadTime},
		{"five elements", `["wamp","in","[48,1,{},\"p\"]",1,2]`, ReasonNotJSON},
		{"a broken fourth element", `["wamp","in","[48,1,{},\"p\"]",{]`, ReasonNotJSON},
		{"number as protocol", `[1,"in","[48,1,{},\"p\"]"]`, ReasonNotJSON},
		{"message not a string", `["wamp","in",[48,1,{},"p"]]`, ReasonNotJSON},
		{"unterminated", `["wamp","in","[48,1,{},\"p\"]"`, ReasonNotJSON},
		{"trailing garbage", `["wamp","in","[48,1,{},\"p\"]"]x`, ReasonNotJSON},
		{"bad escape", `["wamp","in","\q"]`, ReasonNotJSON},
		{"control character", "[\"wamp\",\"in\",\"a\x01\"]", ReasonNotJSON},
		{"upper-case protocol", testkit.LogLine("WAMP", "in", `[48,1,{},"p"]`), ReasonBadName},
		{"protocol with underscore", testkit.LogLine("wamp_x", "in", `[48,1,{},"p"]`), ReasonBadName},
		{"direction starting with a digit", testkit.LogLine("wamp", "1n", `[48,1,{},"p"]`), ReasonBadName},
		{"empty direction", testkit.LogLine("wamp", "", `[48,1,{},"p"]`), ReasonBadName},
		{"name too long", testkit.LogLine(long, "in", `[48,1,{},"p"]`), ReasonBadName},
		{"unicode name", testkit.LogLine("wämp", "in", `[48,1,{},"p"]`), ReasonBadName},
		{"message not json", testkit.LogLine("wamp", "in", `hello`), ReasonBadMessage},
		{"message an object", testkit.LogLine("wamp", "in", `{"type":48}`), ReasonBadMessage},
		{"message empty array", testkit.LogLine("wamp", "in", `[]`), ReasonBadMessage},
		{"type a string", testkit.LogLine("wamp", "in", `["48",1,{},"p"]`), ReasonBadMessage},
		{"type negative", testkit.LogLine("wamp", "in", `[-48,1,{},"p"]`), ReasonBadMessage},
		{"unknown type", testkit.LogLine("wamp", "in", `[99,1,{},"p"]`), ReasonUnknownType},
		{"huge type", testkit.LogLine("wamp", "in", `[99999999999999999999999,1]`), ReasonBadMessage},
		{"call with only a type", testkit.LogLine("wamp", "in", `[48]`), ReasonWrongArity},
		{"call without procedure", testkit.LogLine("wamp", "in", `[48,1,{}]`), ReasonWrongArity},
		{"call with options a list", testkit.LogLine("wamp", "in", `[48,1,[],"p"]`), ReasonWrongType},
		{"call with procedure a number", testkit.LogLine("wamp", "in", `[48,1,{},5]`), ReasonWrongType},
		{"call id a float", testkit.LogLine("wamp", "in", `[48,1.5,{},"p"]`), ReasonBadID},
		{"call id negative", testkit.LogLine("wamp", "in", `[48,-1,{},"p"]`), ReasonBadID},
		{"call id above 2^53", testkit.LogLine("wamp", "in", `[48,9007199254740993,{},"p"]`), ReasonBadID},
		{"call id a string", testkit.LogLine("wamp", "in", `[48,"1",{},"p"]`), ReasonBadID},
		{"call id an object", testkit.LogLine("wamp", "in", `[48,{"id":1},{},"p"]`), ReasonBadID},
		{"result id exponent", testkit.LogLine("wamp", "in", `[50,1e3,{}]`), ReasonBadID},
		{"result details a string", testkit.LogLine("wamp", "in", `[50,1,"x"]`), ReasonWrongType},
		{"error without uri", testkit.LogLine("wamp", "in", `[8,48,1,{}]`), ReasonWrongArity},
		{"error uri a number", testkit.LogLine("wamp", "in", `[8,48,1,{},7]`), ReasonWrongType},
		{"error request type a string", testkit.LogLine("wamp", "in", `[8,"CALL",1,{},"e"]`), ReasonBadID},
		{"invocation registration a string", testkit.LogLine("wamp", "in", `[68,1,"r",{}]`), ReasonBadID},
		{"registered without registration", testkit.LogLine("wamp", "in", `[65,1]`), ReasonWrongArity},
		{"v1 empty id", testkit.LogLine("wamp", "in", `[2,"","hello1"]`), ReasonBadID},
		{"v1 call without procedure", testkit.LogLine("wamp", "in", `[2,"id"]`), ReasonWrongArity},
		{"v1 error with a broken third element", testkit.LogLine("wamp", "in", `[4,"id",{"msg":}]`), ReasonWrongType},
		{"invalid utf-8 procedure", "[\"wamp\",\"in\",\"[48,1,{},\\\"p\xff\\\"]\"]", ReasonInvalidUTF8},
		{"deep nesting", testkit.LogLine("wamp", "in", `[48,1,{"a":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`},"p"]`), ReasonWrongType},
		{"legacy format without message", `wamp:in`, ReasonNotJSON},
		{"the original writer's broken error frame", testkit.LogLine("wamp", "in", `[4,"5f1a,"{msg":"hello world1 error details"}]`), ReasonWrongArity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got logLine
			if r := p.parse([]byte(tc.line), &got); r != tc.reason {
				t.Errorf("%s: reason %q, want %q", tc.line, r, tc.reason)
			}
		})
	}
}
