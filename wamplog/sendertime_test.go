package wamplog

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

// timedLine is the line our PHP class writes: the original's three strings
// and the sender's monotonic clock when it logged the message.
func timedLine(msg string, sent time.Duration) []byte {
	l := testkit.LogLine("php", "out", msg)
	return []byte(strings.TrimSuffix(l, "]") + "," + strconv.FormatInt(int64(sent), 10) + "]")
}

// The sender batched a CALL and its RESULT, logged 50 ms apart, into one
// datagram: the call took 50 ms, not the 0 between their arrivals.
func TestDurationsAreTheSendersOwnClock(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	from := sender(1)
	const boot = 7 * time.Hour // the sender's clock counts from its host's boot
	f.r.HandleLine(from, timedLine(`[48,1,{},"hello1"]`, boot))
	f.r.HandleLine(from, timedLine(`[50,1,{}]`, boot+50*time.Millisecond))
	if n, sum := f.count(t, metrics.Response, "hello1"), f.sum(t, metrics.Response, "hello1"); n != 1 || sum != 0.05 {
		t.Errorf("%d responses taking %vs in all, want 1 taking 0.05s", n, sum)
	}
}

// Lines that waited in the sender's batch are timed when they were logged:
// a call answered 400 ms later on the sender's clock missed its 300 ms,
// though both lines came in the same read.
func TestAnAnswerAfterTheTimeoutOnTheSendersClockIsATimeout(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	from := sender(1)
	f.r.HandleLine(from, timedLine(`[48,1,{},"slow"]`, time.Second))
	f.r.HandleLine(from, timedLine(`[50,1,{}]`, time.Second+400*time.Millisecond))
	if r, to := f.count(t, metrics.Response, "slow"), f.count(t, metrics.Timeout, "slow"); r != 0 || to != 1 {
		t.Errorf("%d responses and %d timeouts, want 0 and 1", r, to)
	}
}

// A line without the sender's time (the original class's) is still timed
// on arrival, beside timed ones from another sender.
func TestLinesWithoutATimeAreTimedOnArrival(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	f.line(sender(1), `[48,1,{},"plain"]`)
	f.r.HandleLine(sender(2), timedLine(`[48,1,{},"timed"]`, time.Hour))
	f.clock.Advance(30 * time.Millisecond)
	f.line(sender(1), `[50,1,{}]`)
	f.r.HandleLine(sender(2), timedLine(`[50,1,{}]`, time.Hour+10*time.Millisecond))
	if sum := f.sum(t, metrics.Response, "plain"); sum != 0.03 {
		t.Errorf("plain: %vs, want 0.03s (arrivals)", sum)
	}
	if sum := f.sum(t, metrics.Response, "timed"); sum != 0.01 {
		t.Errorf("timed: %vs, want 0.01s (the sender's clock)", sum)
	}
}

// The offset is set by the sender's first timed line, which our class sends
// at once; lines that waited in a batch keep their logged times, and one
// that would be placed over a second after its arrival sets it anew.
func TestSenderClockOffsetIsSetByTheFirstLine(t *testing.T) {
	var c senderClock
	ms := int64(time.Millisecond)
	// Logged at 100, arrived at 1100: the offset is 1000 ms.
	if got := c.at(100*ms, 1100*ms); got != 1100*ms {
		t.Fatalf("first line at %d ms, want its arrival", got/ms)
	}
	// Logged at 200, waited 20 ms in a batch: placed when it was logged.
	if got := c.at(200*ms, 1220*ms); got != 1200*ms {
		t.Fatalf("second line at %d ms, want 1200", got/ms)
	}
	// A clock that jumped 5 s ahead would place lines in the future: the
	// offset is set anew from this line.
	if got := c.at(5300*ms, 1300*ms); got != 1300*ms {
		t.Fatalf("jumped line at %d ms, want its arrival", got/ms)
	}
	if got := c.at(5310*ms, 1320*ms); got != 1310*ms {
		t.Fatalf("line after the jump at %d ms, want 1310", got/ms)
	}
}

// The first line of a process is a HELLO, which the tracker ignores; sent
// at once, it still sets the clock, so the first CALL, batched behind it,
// keeps its logged time.
func TestAnIgnoredTimedLineSetsTheSendersClock(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	from := sender(1)
	f.r.HandleLine(from, timedLine(`[1,"realm1",{}]`, time.Hour))
	f.clock.Advance(100 * time.Millisecond)
	// Both logged 40 and 90 ms after the HELLO, arriving now together.
	f.r.HandleLine(from, timedLine(`[48,1,{},"batched"]`, time.Hour+40*time.Millisecond))
	f.r.HandleLine(from, timedLine(`[50,1,{}]`, time.Hour+90*time.Millisecond))
	if sum := f.sum(t, metrics.Response, "batched"); sum != 0.05 {
		t.Errorf("batched: %vs, want 0.05s", sum)
	}
}

// Whatever a sender writes, a line is placed neither more than maxAhead
// after its arrival nor before that sender's previous line: no negative
// duration.
func TestSenderTimesStayNearArrivalAndNeverGoBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var c senderClock
	arrival, prev := int64(0), int64(math.MinInt64)
	for i := range 10000 {
		arrival += rng.Int64N(int64(time.Millisecond))
		var sent int64
		switch rng.IntN(3) {
		case 0:
			sent = rng.Int64() // anything a hostile sender may claim
		case 1:
			sent = arrival - rng.Int64N(int64(time.Second)) // plausible, reordered
		default:
			sent = int64(i) * int64(time.Microsecond)
		}
		got := c.at(sent, arrival)
		if got > arrival+maxAhead || got < prev {
			t.Fatalf("line %d (sent %d, arrived %d) placed at %d, previous at %d", i, sent, arrival, got, prev)
		}
		prev = got
	}
}

// A sender that writes its CALL's time after its RESULT's cannot make a
// negative duration: the answer is placed no earlier than the call.
func TestABackwardsTimeMakesNoNegativeDuration(t *testing.T) {
	f := newIngestFixture(t, IngesterOpts{})
	from := sender(1)
	f.r.HandleLine(from, timedLine(`[48,1,{},"back"]`, time.Hour))
	f.r.HandleLine(from, timedLine(`[50,1,{}]`, time.Hour-time.Minute))
	if n, sum := f.count(t, metrics.Response, "back"), f.sum(t, metrics.Response, "back"); n != 1 || sum != 0 {
		t.Errorf("%d responses taking %vs, want 1 taking 0s", n, sum)
	}
}
