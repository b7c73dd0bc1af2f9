package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// BenchmarkExpireIdleSenders is one sweep of a tracker holding 10,000 log
// senders in each of 16 families, every one with a call pending a minute
// out and nothing due: what the sweeper costs every SweepInterval while
// nothing expires.
func BenchmarkExpireIdleSenders(b *testing.B) {
	clock := testkit.NewFakeClock(time.Unix(1_700_000_000, 0))
	tracker, err := NewTracker(TrackerOpts{DefaultTimeout: 300 * time.Millisecond, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	const senders, families = 10_000, 16
	for f := range families {
		fam, err := NewFamily(reg, FamilyOpts{Prefix: fmt.Sprintf("php%d_out", f), MaxProcedures: 10})
		if err != nil {
			b.Fatal(err)
		}
		for range senders {
			tracker.Open(fam).Call(1, "p", time.Minute)
		}
	}
	var buf []*Session
	b.ReportAllocs()
	for b.Loop() {
		buf = tracker.Expire(buf[:0])
	}
}
