// Package ratelog logs repeated trouble at most once per interval.
//
// Bad input arrives at network speed; logging every instance would turn a
// misbehaving client into a disk-filling one. A Logger lets the first line
// through, counts what follows, and reports the count with the next line it
// lets through. Counting for metrics is the caller's job.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger emits at most one record per interval.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// New returns a Logger writing to log at most once per interval. now is the
// clock; time.Now when nil.
func New(log *slog.Logger, interval time.Duration, now func() time.Time) *Logger {
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, interval: interval, now: now}
}

// Log writes the record unless one was written less than an interval ago,
// in which case it only counts it. args are slog key-value pairs.
func (l *Logger) Log(level slog.Level, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	if now.Before(l.next) {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.next = now.Add(l.interval)
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, slog.Int("suppressed_since_last", suppressed))
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// Warn is Log at slog.LevelWarn.
func (l *Logger) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, args...) }
