// Package wamplog receives the WAMP message log lines PHP's WampObserver
// sends, over UDP and TCP, and records their calls in the metrics tracker.
//
// A Listener owns the sockets and reads lines; an Ingester parses each
// line (without allocating) and reports the calls it describes to a
// metrics.Tracker, in families named <protocol>_<direction> alongside the
// router's own; a bad line is counted by reason and otherwise ignored.
package wamplog
