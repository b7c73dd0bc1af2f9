// Package ratelog logs repeated trouble at most once per interval and kind.
//
// Bad input arrives at network speed; logging every instance would turn a
// misbehaving client into a disk-filling one. A Logger keeps, for each kind
// of trouble, a window of one interval: the first record of the kind goes
// through and opens the window; the records that follow inside it are held
// back and counted; when the window ends, the last one held back is logged
// with held_back=<count> and opens the next window. A flood therefore logs
// one line per interval per kind, each with an example and a count, one
// kind's flood never hides another kind, and no count is lost: Close logs
// what is still held back. Counting for metrics is the caller's job.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxKinds bounds the kinds a Logger keeps apart. Kinds are constants in
// the code, so this is never reached; if it were, further kinds would share
// one window rather than grow the map.
const maxKinds = 256

// overflowKind is the window further kinds share.
const overflowKind = "ratelog.other"

// Logger emits, per kind, at most one record per interval. Safe for
// concurrent use.
type Logger struct {
	log      *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	kinds  map[string]*window
	closed bool
	timers sync.WaitGroup // window-end timers that have not finished
}

// window is one kind's current interval.
type window struct {
	end   time.Time // the window is open until then
	held  int       // records held back in it
	last  record    // the last of them
	timer *time.Timer
}

type record struct {
	level slog.Level
	msg   string
	args  []any
}

// New returns a Logger writing to log at most once per interval and kind.
// now is the clock deciding windows; time.Now when nil. Close it when done.
func New(log *slog.Logger, interval time.Duration, now func() time.Time) *Logger {
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, interval: interval, now: now, kinds: map[string]*window{}}
}

// Log writes the record of the given kind unless a record of that kind
// opened a window less than an interval ago; then it is held back and
// counted, and logged when the window ends if it is the last one held.
// args are slog key-value pairs.
func (l *Logger) Log(level slog.Level, kind, msg string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	now := l.now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.log.Log(context.Background(), level, msg, args...)
		return
	}
	w := l.window(kind)
	if now.Before(w.end) {
		w.held++
		w.last = record{level, msg, args}
		if w.timer == nil {
			l.timers.Add(1)
			w.timer = time.AfterFunc(w.end.Sub(now), func() { l.windowEnded(w) })
		}
		l.mu.Unlock()
		return
	}
	w.end = now.Add(l.interval)
	l.mu.Unlock()
	l.log.Log(context.Background(), level, msg, args...)
}

// Warn is Log at slog.LevelWarn with msg as its kind.
func (l *Logger) Warn(msg string, args ...any) { l.Log(slog.LevelWarn, msg, msg, args...) }

// window returns kind's window; l.mu is held.
func (l *Logger) window(kind string) *window {
	w, ok := l.kinds[kind]
	if !ok {
		if len(l.kinds) >= maxKinds {
			kind = overflowKind
			if w, ok = l.kinds[kind]; ok {
				return w
			}
		}
		w = &window{}
		l.kinds[kind] = w
	}
	return w
}

// windowEnded logs what w held back and opens the next window with it.
func (l *Logger) windowEnded(w *window) {
	defer l.timers.Done()
	l.mu.Lock()
	w.timer = nil
	rec, held := w.last, w.held
	w.held, w.last = 0, record{}
	if held > 0 {
		w.end = l.now().Add(l.interval)
	}
	l.mu.Unlock()
	if held > 0 {
		l.emit(rec, held)
	}
}

func (l *Logger) emit(rec record, held int) {
	args := append(rec.args[:len(rec.args):len(rec.args)], slog.Int("held_back", held))
	l.log.Log(context.Background(), rec.level, rec.msg, args...)
}

// Close logs every record still held back, stops the window timers and
// waits for any that is running. Records after Close are logged as they
// come: the program is on its way out.
func (l *Logger) Close() {
	l.mu.Lock()
	l.closed = true
	type heldRecord struct {
		rec  record
		held int
	}
	var pending []heldRecord
	for _, w := range l.kinds {
		if w.timer != nil && w.timer.Stop() {
			l.timers.Done() // it will not run
		}
		w.timer = nil
		if w.held > 0 {
			pending = append(pending, heldRecord{w.last, w.held})
			w.held, w.last = 0, record{}
		}
	}
	l.mu.Unlock()
	l.timers.Wait()
	for _, p := range pending {
		l.emit(p.rec, p.held)
	}
}
