package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Autobahn runs the scripts of an installed Autobahn|JS (testdata/autobahn,
// pinned by its package-lock.json) with Node.js: a WAMP client nobody here
// wrote.
type Autobahn struct {
	node, dir string
}

// RequireAutobahn finds node and the Autobahn|JS installed in dir, or
// skips the test without them (fails it where tools are required; see
// RequireToolsEnv).
func RequireAutobahn(t testing.TB, dir string) *Autobahn {
	t.Helper()
	node := RequireTool(t, "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "autobahn", "package.json")); err != nil {
		missing(t, "Autobahn|JS not installed: run npm ci in "+dir)
	}
	return &Autobahn{node: node, dir: dir}
}

// Start runs one of the scripts (caller.js, callee.js) with args, with env
// added to the test's environment.
func (a *Autobahn) Start(t testing.TB, env []string, script string, args ...string) *Process {
	t.Helper()
	return StartProcess(t, env, a.node, append([]string{filepath.Join(a.dir, script)}, args...)...)
}

// SummaryPrefix starts the line caller.js and callee.js print last.
const SummaryPrefix = `{"event":"summary"`

// CallerSummary is the line caller.js prints last.
type CallerSummary struct {
	Calls      uint64            `json:"calls"`
	Results    uint64            `json:"results"`
	Progress   uint64            `json:"progress"` // progressive results received
	Errors     map[string]uint64 `json:"errors"`   // by error URI
	Procedures map[string]struct {
		Calls   uint64            `json:"calls"`
		Results uint64            `json:"results"`
		Errors  map[string]uint64 `json:"errors"`
	} `json:"procedures"`
	Failure string `json:"failure"`
}

// CalleeSummary is the line callee.js prints last.
type CalleeSummary struct {
	Invocations uint64 `json:"invocations"`
	Results     uint64 `json:"results"`
	Errors      uint64 `json:"errors"`
}

// ParseSummary parses a summary line.
func ParseSummary[S CallerSummary | CalleeSummary](t testing.TB, line string) S {
	t.Helper()
	var s S
	if err := json.Unmarshal([]byte(line), &s); err != nil {
		t.Fatalf("summary %q: %v", line, err)
	}
	return s
}

// Call runs caller.js with args against in, waits for it to leave and exit
// 0, and returns what it saw; a failure it reports fails the test.
func (a *Autobahn) Call(t testing.TB, in *Instance, args ...string) CallerSummary {
	t.Helper()
	p := a.Start(t, []string{"WAMP_URL=" + in.WAMPURL, "WAMP_REALM=" + Realm}, "caller.js", args...)
	line := p.WaitLine(SummaryPrefix, 60*time.Second)
	p.ExitsCleanly()
	s := ParseSummary[CallerSummary](t, line)
	if s.Failure != "" {
		t.Fatalf("caller.js %v: %s", args, s.Failure)
	}
	t.Logf("caller.js %s: %s", strings.Join(args, " "), line)
	return s
}
