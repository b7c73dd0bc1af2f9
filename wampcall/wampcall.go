// Package wampcall holds the WAMP v2 rules about calls that both the
// router's observer and the PHP log parser apply, so that the two read a
// message alike: the CALL timeout option, progressive answers, and exact
// registrations. Each rule is a decision over a value its caller already
// extracted, in whatever way its input needs (nexus's decoded messages,
// or raw JSON bytes read without allocating).
package wampcall

import (
	"math"
	"time"
)

// maxMillis is the longest timeout, in milliseconds, a time.Duration holds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// Timeout is the timeout that a CALL's timeout option of ms milliseconds
// asks for (WAMP v2, Call Timeouts: CALL.Options.timeout|integer, in
// milliseconds), ms read as nexus's dealer reads the option (wamp.AsInt64,
// which wraps a uint64 beyond an int64 into a negative number). A
// positive value is a timeout the dealer enforces; 0 is the spec's "no
// timeout", and a negative value, which the spec does not allow, is none
// as well, as the dealer treats it. A timeout longer than a Duration
// holds is clamped to the longest one, not taken as none: the caller
// asked for a very long wait, and the dealer's answer decides the outcome.
func Timeout(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return time.Duration(min(ms, maxMillis)) * time.Millisecond
}

// TimeoutFloat is Timeout for an option that is not a plain integer:
// msgpack, CBOR and JavaScript clients send 1500.0, and a JSON integer
// beyond a uint64 decodes as a float. It is converted as nexus's dealer
// converts it (wamp.AsInt64: Go's int64 conversion), so 1500.7 is 1500 ms
// and 0.5 none, and a value beyond an int64 is whatever that conversion
// makes of it on this platform (on amd64 the most negative int64: none),
// as for the dealer itself: the router and the log path then agree on
// every value and platform.
func TimeoutFloat(ms float64) time.Duration {
	if math.IsNaN(ms) {
		return 0
	}
	return Timeout(int64(ms))
}

// Progressive tells whether an answer whose progress detail is v
// (RESULT.Details.progress, YIELD.Options.progress) is a progressive one,
// which does not end its call (WAMP v2, Progressive Call Results). Only
// the boolean true makes it so: absent (nil), false, or a value of another
// type leaves the answer final.
func Progressive(v any) bool {
	b, ok := v.(bool)
	return ok && b
}

// ExactMatch tells whether a REGISTER whose match option is policy
// registers one procedure, rather than a "prefix" or "wildcard" pattern,
// which is no procedure URI (WAMP v2, Pattern-based Registration): the
// option's default is "exact". Callers pass "" when the option is absent
// or not a string. It is generic so that the log parser can pass a []byte
// from its read buffer without converting it.
func ExactMatch[T string | []byte](policy T) bool {
	return len(policy) == 0 || string(policy) == "exact"
}
