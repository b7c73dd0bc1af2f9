package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond until it reports ok, for at most timeout, and
// fails the test if it never does, with what it waited for and the value
// cond observed last. cond returns what it looked at (a count, a few
// figures, a list of differences) so that a failure shows how far off it
// was. Tests synchronise with the router only this way, never by sleeping.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (observed any, ok bool)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		observed, ok := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v; last observed: %v", what, timeout, observed)
		}
		time.Sleep(wait)
	}
}
