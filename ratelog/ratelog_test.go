package ratelog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the timer goroutine's writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the logged lines, each as its fields.
func (b *syncBuffer) lines() []map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			panic(err)
		}
		fields := map[string]string{}
		for k, v := range raw {
			fields[k] = fmt.Sprint(v)
		}
		out = append(out, fields)
	}
	return out
}

func TestAFloodLogsItsFirstRecordThenTheCountAtClose(t *testing.T) {
	var buf syncBuffer
	clock := testkit.NewFakeClock(time.Unix(0, 0))
	l := New(slog.New(slog.NewJSONHandler(&buf, nil)), time.Hour, clock.Now)
	for i := range 6 {
		l.Warn("bad line", "n", i)
	}
	if got := buf.lines(); len(got) != 1 || got[0]["n"] != "0" {
		t.Fatalf("before Close: %v, want only the first record", got)
	}
	l.Close()
	got := buf.lines()
	if len(got) != 2 || got[1]["n"] != "5" || got[1]["held_back"] != "5" {
		t.Fatalf("after Close: %v, want the last record with held_back=5", got)
	}
}

// One kind's flood neither hides another kind nor takes its count.
func TestKindsHaveWindowsOfTheirOwn(t *testing.T) {
	var buf syncBuffer
	clock := testkit.NewFakeClock(time.Unix(0, 0))
	l := New(slog.New(slog.NewJSONHandler(&buf, nil)), time.Hour, clock.Now)
	for range 100 {
		l.Warn("origin refused")
	}
	l.Warn("join failed")
	l.Log(slog.LevelWarn, "bad log line not_json", "bad log line", "reason", "not_json")
	l.Log(slog.LevelWarn, "bad log line too_long", "bad log line", "reason", "too_long")
	l.Log(slog.LevelWarn, "bad log line too_long", "bad log line", "reason", "too_long")
	l.Close()
	var got []string
	for _, f := range buf.lines() {
		got = append(got, f["msg"]+"/"+f["reason"]+"/"+f["held_back"])
	}
	want := []string{"origin refused//", "join failed//", "bad log line/not_json/", "bad log line/too_long/"}
	if len(got) != 6 || strings.Join(got[:4], ",") != strings.Join(want, ",") {
		t.Fatalf("logged %v, want %v then the two held-back counts", got, want)
	}
	held := map[string]bool{got[4]: true, got[5]: true}
	if !held["origin refused//99"] || !held["bad log line/too_long/1"] {
		t.Errorf("held-back lines %v, want origin refused ×99 and too_long ×1", got[4:])
	}
}

// When a window ends with records held back and none follows, the count
// is logged then, not only at Close.
func TestTheCountIsLoggedWhenTheWindowEnds(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewJSONHandler(&buf, nil)), 20*time.Millisecond, nil)
	defer l.Close()
	for range 3 {
		l.Warn("slow consumer")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(buf.lines()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no held-back line: %v", buf.lines())
		}
		time.Sleep(time.Millisecond)
	}
	if got := buf.lines()[1]["held_back"]; got != "2" {
		t.Errorf("held_back=%s, want 2", got)
	}
}

func TestAfterTheWindowTheNextRecordGoesThrough(t *testing.T) {
	var buf syncBuffer
	clock := testkit.NewFakeClock(time.Unix(0, 0))
	l := New(slog.New(slog.NewJSONHandler(&buf, nil)), time.Second, clock.Now)
	l.Warn("bad line")
	clock.Advance(time.Second)
	l.Warn("bad line")
	l.Close()
	if got := buf.lines(); len(got) != 2 || got[1]["held_back"] != "" {
		t.Errorf("logged %v, want two plain records", got)
	}
}

func TestDisabledLevelCostsNothing(t *testing.T) {
	var buf syncBuffer
	l := New(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError})), time.Second, nil)
	l.Warn("dropped")
	l.Close()
	if got := buf.lines(); len(got) != 0 {
		t.Errorf("logged below the handler's level: %v", got)
	}
}
