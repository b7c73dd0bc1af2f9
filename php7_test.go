package observer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// php7LogScript logs calls with known outcomes through whichever
// WampObserver the process loaded: as a caller (wamp/out: v2 and v1) and as
// a callee (wamp/in, whose INVOCATION names no procedure, so the router
// learns it from the REGISTER and REGISTERED lines).
const php7LogScript = `
WampObserver::configure(getenv('WAMP_OBSERVER_ADDR'));
$out = ['[48,1,{},"hello1",[]]', '[50,1,{},["ok"]]',
	'[48,2,{},"hello2",[]]', '[8,48,2,{},"app.error.hello",[]]',
	'[48,3,{"timeout":50},"hello3",[]]', '[8,48,3,{},"wamp.error.timeout",[]]',
	'[48,4,{},"hello4",[]]', '[50,4,{},["' . str_repeat('r', 70000) . '"]]',
	'[48,5,{},"hello5",[]]',
	'[2,"f7de8d936fb95715","hello6",{"msg":"details"}]', '[3,"f7de8d936fb95715",{"msg":"reply"}]',
	'[2,"c3356b633c7ff987","hello7",{}]', '[4,"c3356b633c7ff987",{"msg":"error details"}]'];
foreach ($out as $m) { WampObserver::log('wamp', 'out', $m); usleep(2000); }
$in = ['[64,10,{},"hello9"]', '[65,10,77]', '[68,11,77,{},[]]', '[70,11,{},[]]',
	'[68,12,77,{},[]]', '[8,68,12,{},"app.error.hello",[]]'];
foreach ($in as $m) { WampObserver::log('wamp', 'in', $m); usleep(2000); }
echo "logged: shortened ", WampObserver::$shortened, ", dropped ", WampObserver::$dropped, "\n";
`

// TestPHP7ObserverLinesCountLikeThePHP8Ones runs the same log lines
// through the PHP 8 WampObserver and the PHP 7 one (under PHP 8: no PHP 7
// is installable here), each against a router of its own, and checks that
// the router counts both the same, and as intended.
func TestPHP7ObserverLinesCountLikeThePHP8Ones(t *testing.T) {
	want := map[string]uint64{
		"wamp_out_responses_seconds hello1": 1,
		"wamp_out_errors_seconds hello2":    1,
		"wamp_out_timeouts_seconds hello3":  1,
		"wamp_out_responses_seconds hello4": 1, // its RESULT shortened to the head
		"wamp_out_timeouts_seconds hello5":  1, // never answered
		"wamp_out_responses_seconds hello6": 1,
		"wamp_out_errors_seconds hello7":    1,
		"wamp_in_responses_seconds hello9":  1,
		"wamp_in_errors_seconds hello9":     1,
	}
	counts := map[string]map[string]uint64{}
	for _, class := range []string{"php/WampObserver.php", "php/php7/WampObserver.php"} {
		t.Run(class, func(t *testing.T) {
			in := harness.Start(t, harness.Config{Timeout: 100 * time.Millisecond, Log: true})
			php := harness.StartPHP(t, []string{"WAMP_OBSERVER_ADDR=" + in.LogAddr},
				"-d", "display_errors=stderr", "-d", "error_reporting=-1", "-r", "require '"+class+"';"+php7LogScript)
			if line := php.WaitLine("logged:", 10*time.Second); line != "logged: shortened 1, dropped 0" {
				t.Errorf("PHP printed %q", line)
			}
			php.ExitsCleanly()
			var got *harness.Scrape
			testkit.Eventually(t, 10*time.Second, "no calls pending and both timeouts", func() (any, bool) {
				got = in.Scrape(t)
				pending, ok := got.Gauge("wamp_observer_log_calls_pending")
				timeouts, _ := got.SummaryTotal("wamp_out_timeouts_seconds") // no series: none yet
				return fmt.Sprintf("pending %v, timeouts %d", pending, timeouts), ok && pending == 0 && timeouts == 2
			})
			badLines, _ := got.Family("wamp_observer_log_bad_lines_total")
			for _, m := range badLines.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("bad lines %v: %v", m.GetLabel(), v)
				}
			}
			counts[class] = map[string]uint64{}
			for _, family := range []string{"wamp_out_responses_seconds", "wamp_out_errors_seconds", "wamp_out_timeouts_seconds",
				"wamp_in_responses_seconds", "wamp_in_errors_seconds", "wamp_in_timeouts_seconds"} {
				mf, _ := got.Family(family) // no family: no counts
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "message" && m.GetSummary().GetSampleCount() > 0 {
							counts[class][family+" "+l.GetValue()] = m.GetSummary().GetSampleCount()
						}
					}
				}
			}
			if len(counts[class]) != len(want) {
				t.Errorf("counts %v, want %v", counts[class], want)
			}
			for key, n := range want {
				if counts[class][key] != n {
					t.Errorf("%s: %d, want %d", key, counts[class][key], n)
				}
			}
		})
	}
}
