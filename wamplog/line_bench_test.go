package wamplog

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// BenchmarkParseLine is the line parser on the lines PHP processes send
// most, valid and invalid, at several sizes.
func BenchmarkParseLine(b *testing.B) {
	big := strings.Repeat("x", 4096)
	for _, bc := range []struct{ name, line string }{
		{"v2_call", testkit.LogLine("wamp", "out", `[48,123456,{"timeout":300},"hello3",["hello world 1"]]`)},
		{"v2_result", testkit.LogLine("wamp", "out", `[50,123456,{},["Hello from hello3"]]`)},
		{"v2_call_timed", strings.TrimSuffix(testkit.LogLine("wamp", "out", `[48,123456,{"timeout":300},"hello3",["hello world 1"]]`), "]") + ",9931193112526]"},
		{"v2_invocation", testkit.LogLine("wamp", "in", `[68,98765,4242,{"procedure":"hello3"},["hello world 1"]]`)},
		{"v1_call", testkit.LogLine("wamp", "in", `[2,"6560a1b2c3d4e","hello3",{"msg":"hello world 1 details"}]`)},
		{"v2_call_4KiB_args", testkit.LogLine("wamp", "out", `[48,123456,{"timeout":300},"hello3",["`+big+`"]]`)},
		{"bad_not_json", `this is not a log line at all`},
		{"bad_name", testkit.LogLine("WAMP", "out", `[48,1,{},"p"]`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newLineParser()
			line := []byte(bc.line)
			var l logLine
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				p.parse(line, &l)
			}
		})
	}
}

// BenchmarkHandleLinePair is the whole log path after the socket: a CALL
// line and its RESULT line parsed, tracked and recorded in Prometheus.
func BenchmarkHandleLinePair(b *testing.B) {
	tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: 300 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	in, err := NewIngester(prometheus.NewRegistry(), IngesterOpts{Tracker: tracker, MaxProcedures: 1000, Logger: testkit.QuietLog()})
	if err != nil {
		b.Fatal(err)
	}
	r := in.NewReader("udp")
	defer r.Close()
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	calls := make([][]byte, 1024)
	results := make([][]byte, 1024)
	for i := range calls {
		calls[i] = []byte(testkit.LogLine("wamp", "out", fmt.Sprintf(`[48,%d,{"timeout":300},"hello%d",["hello world"]]`, i+1, i%9+1)))
		results[i] = []byte(testkit.LogLine("wamp", "out", fmt.Sprintf(`[50,%d,{},["Hello"]]`, i+1)))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.HandleLine(from, calls[i%1024])
		r.HandleLine(from, results[i%1024])
		i++
	}
}

// BenchmarkLintFamilyNames is what a new protocol/direction pair costs
// once: its family built in a throwaway registry and linted.
func BenchmarkLintFamilyNames(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := lintFamilyNames("php_out"); err != nil {
			b.Fatal(err)
		}
	}
}
