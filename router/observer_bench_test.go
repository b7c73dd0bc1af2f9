package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/gammazero/nexus/v3/transport/serialize"
	"github.com/gammazero/nexus/v3/wamp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// benchObservers returns a real tracker, Prometheus families (caller and
// callee side) and traffic counters, as the program wires them, for
// observers to open sessions on.
func benchObservers(b *testing.B) (OpenSessionFunc, TrafficFunc) {
	b.Helper()
	reg := prometheus.NewRegistry()
	calls, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router", MaxProcedures: 1000})
	if err != nil {
		b.Fatal(err)
	}
	invocations, err := metrics.NewFamily(reg, metrics.FamilyOpts{Prefix: "wamp_router_callee", MaxProcedures: 1000, Interrupts: true})
	if err != nil {
		b.Fatal(err)
	}
	traffic, err := metrics.NewTraffic(reg, metrics.TrafficOpts{Prefix: "wamp_router", MessageTypes: MessageTypes(),
		CloseReasons: CloseReasons(), RefusalReasons: RefusalReasons(), Callees: invocations})
	if err != nil {
		b.Fatal(err)
	}
	tracker, err := metrics.NewTracker(metrics.TrackerOpts{DefaultTimeout: 300 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	open := func(string) SessionObservers {
		return SessionObservers{Calls: tracker.Open(calls), Invocations: tracker.Open(invocations)}
	}
	return open, func(string) TrafficObserver { return benchTraffic{traffic} }
}

type benchTraffic struct{ *metrics.Traffic }

func (t benchTraffic) OpenConn() ConnTraffic { return t.Open() }

// newWelcomedObserver returns a connection observer with its session
// open, as after HELLO and WELCOME.
func newWelcomedObserver(open OpenSessionFunc, traffic TrafficFunc) *connObserver {
	obs := newConnObserver(open, traffic)
	hello := &wamp.Hello{Realm: "realm1", Details: wamp.Dict{}}
	obs.received(hello, 40)
	obs.fromClient(hello)
	obs.toClient(&wamp.Welcome{ID: 1})
	return obs
}

func newBenchObserver(b *testing.B) *connObserver {
	obs := newWelcomedObserver(benchObservers(b))
	b.Cleanup(func() { obs.endSession(CloseOther); obs.closeTraffic() })
	return obs
}

// BenchmarkObserveCallResult is the observer's hot path: one CALL seen on
// the way in and its RESULT on the way out, recorded in Prometheus, for
// one procedure and for calls spread over 1,000 (each its own series,
// whose lookups and observations miss the caches more).
func BenchmarkObserveCallResult(b *testing.B) {
	for _, procedures := range []int{1, 1000} {
		b.Run(fmt.Sprintf("procedures=%d", procedures), func(b *testing.B) {
			obs := newBenchObserver(b)
			calls := make([]*wamp.Call, procedures)
			for i := range calls {
				calls[i] = &wamp.Call{Options: wamp.Dict{}, Procedure: wamp.URI(fmt.Sprintf("com.example.hello%d", i+1))}
			}
			result := &wamp.Result{Details: wamp.Dict{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				call := calls[i%procedures]
				call.Request = wamp.ID(i)
				result.Request = wamp.ID(i)
				obs.received(call, 40)
				obs.fromClient(call)
				obs.sent(result, 20)
				obs.toClient(result)
			}
		})
	}
}

// BenchmarkObserveCallResultParallel runs the hot path on every core, one
// connection per goroutine, as under many concurrent callers.
func BenchmarkObserveCallResultParallel(b *testing.B) {
	open, traffic := benchObservers(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		obs := newWelcomedObserver(open, traffic)
		defer obs.closeTraffic()
		defer obs.endSession(CloseOther)
		call := &wamp.Call{Options: wamp.Dict{}, Procedure: "hello1"}
		result := &wamp.Result{Details: wamp.Dict{}}
		for i := 0; pb.Next(); i++ {
			call.Request = wamp.ID(i)
			result.Request = wamp.ID(i)
			obs.received(call, 40)
			obs.fromClient(call)
			obs.sent(result, 20)
			obs.toClient(result)
		}
	})
}

// BenchmarkJSONCallResult puts the hot path in proportion: the same pair
// decoded, guarded and encoded by nexus's JSON serializer in the peer,
// without and with the observer.
func BenchmarkJSONCallResult(b *testing.B) {
	for _, observed := range []bool{false, true} {
		b.Run(fmt.Sprintf("observed=%v", observed), func(b *testing.B) {
			p := &wsPeer{serializer: &serialize.JSONSerializer{}, cfg: &peerConfig{rejected: func(string) {}},
				guard: newGuard(DefaultMaxCallsInFlight, DefaultMaxTestaments, DefaultMaxTestamentBytes)}
			if observed {
				p.obs = newBenchObserver(b)
			}
			result := &wamp.Result{Details: wamp.Dict{}, Arguments: wamp.List{"Hello, world"}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				frame := fmt.Appendf(nil, `[48,%d,{},"hello1",["world"]]`, i)
				if msg, _ := p.decode(frame); msg == nil {
					b.Fatal("decode failed")
				}
				result.Request = wamp.ID(i)
				if _, ok := p.marshal(result); !ok {
					b.Fatal("encode failed")
				}
				p.observe(result, len(frame))
			}
		})
	}
}
