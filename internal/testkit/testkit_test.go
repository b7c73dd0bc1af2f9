package testkit

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestLogLineIsWhatWampObserverSends(t *testing.T) {
	for _, tc := range []struct {
		protocol, direction, msg string
		want                     string
	}{
		{"wamp", "in", `[2,"5f1a","hello1",{"msg":"hello world1 request details"}]`,
			`["wamp","in","[2,\"5f1a\",\"hello1\",{\"msg\":\"hello world1 request details\"}]"]`},
		{"wamp", "in", `[4,"5f1a",{"msg":"hello world1 error details"}]`,
			`["wamp","in","[4,\"5f1a\",{\"msg\":\"hello world1 error details\"}]"]`},
		// As json_encode with JSON_UNESCAPED_SLASHES|JSON_UNESCAPED_UNICODE:
		// slashes, <, > and & as they are; control characters escaped.
		{"php", "out", "[48,1,{},\"a/b<é>&\"]\n\t\\",
			`["php","out","[48,1,{},\"a/b<é>&\"]\n\t\\"]`},
	} {
		if got := LogLine(tc.protocol, tc.direction, tc.msg); got != tc.want {
			t.Errorf("LogLine(%q, %q, %q)\n got %s\nwant %s", tc.protocol, tc.direction, tc.msg, got, tc.want)
		}
	}
}
