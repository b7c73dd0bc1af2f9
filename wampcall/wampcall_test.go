package wampcall

import (
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// longest is the longest timeout an option can ask for.
const longest = time.Duration(math.MaxInt64/int64(time.Millisecond)) * time.Millisecond

func TestTimeout(t *testing.T) {
	for _, tc := range []struct {
		ms   int64
		want time.Duration
	}{
		{300, 300 * time.Millisecond},
		{1, time.Millisecond},
		{0, 0},  // the spec's "no timeout"
		{-5, 0}, // not allowed; none, as nexus reads it
		{math.MinInt64, 0},
		{9223372036853, 9223372036853 * time.Millisecond},
		{9223372036854, longest}, // the longest a Duration holds
		{9223372036855, longest}, // clamped, not none
		{math.MaxInt64, longest},
	} {
		if got := Timeout(tc.ms); got != tc.want {
			t.Errorf("Timeout(%d) = %v, want %v", tc.ms, got, tc.want)
		}
	}
}

func TestTimeoutFloat(t *testing.T) {
	for _, tc := range []struct {
		ms   float64
		want time.Duration
	}{
		{1500, 1500 * time.Millisecond},
		{1500.7, 1500 * time.Millisecond}, // whole milliseconds, as nexus converts it
		{1, time.Millisecond},
		{0.5, 0},
		{0, 0},
		{-1500, 0},
		{math.NaN(), 0},
		{1e15, longest}, // within an int64, beyond a Duration: clamped
	} {
		if got := TimeoutFloat(tc.ms); got != tc.want {
			t.Errorf("TimeoutFloat(%v) = %v, want %v", tc.ms, got, tc.want)
		}
	}
	// Beyond an int64, what Go's conversion gives here, as for nexus's
	// wamp.AsInt64 (wamplog's TestTimeoutsReadAsTheDealerReadsThem checks
	// against nexus itself).
	for _, ms := range []float64{1e19, 1e300, math.Inf(1), math.Inf(-1)} {
		if got, want := TimeoutFloat(ms), Timeout(int64(ms)); got != want {
			t.Errorf("TimeoutFloat(%v) = %v, want %v", ms, got, want)
		}
	}
}

func TestProgressive(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want bool
	}{
		{true, true},
		{nil, false}, // absent
		{false, false},
		{"true", false},
		{1, false},
	} {
		if got := Progressive(tc.v); got != tc.want {
			t.Errorf("Progressive(%#v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestExactMatch(t *testing.T) {
	for _, tc := range []struct {
		policy string
		want   bool
	}{
		{"", true}, // absent, or not a string: the default
		{"exact", true},
		{"prefix", false},
		{"wildcard", false},
		{"Exact", false},
	} {
		if got := ExactMatch(tc.policy); got != tc.want {
			t.Errorf("ExactMatch(%q) = %v, want %v", tc.policy, got, tc.want)
		}
		if got := ExactMatch([]byte(tc.policy)); got != tc.want {
			t.Errorf("ExactMatch([]byte(%q)) = %v, want %v", tc.policy, got, tc.want)
		}
	}
}
