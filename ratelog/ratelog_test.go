package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAtMostOneLinePerIntervalWithSuppressedCount(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Second, func() time.Time { return now })
	for range 5 {
		l.Warn("bad line")
	}
	now = now.Add(999 * time.Millisecond)
	l.Warn("bad line")
	now = now.Add(time.Millisecond)
	l.Warn("bad line", "reason", "not_json")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var second struct{ suppressed, reason string }
	for _, f := range strings.Fields(lines[1]) {
		if v, ok := strings.CutPrefix(f, "suppressed_since_last="); ok {
			second.suppressed = v
		}
		if v, ok := strings.CutPrefix(f, "reason="); ok {
			second.reason = v
		}
	}
	if second.suppressed != "5" || second.reason != "not_json" {
		t.Errorf("second line %q: want 5 suppressed and its own attributes", lines[1])
	}
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), time.Second, nil)
	l.Warn("dropped")
	if buf.Len() != 0 {
		t.Errorf("logged below the handler's level: %s", buf.String())
	}
}
