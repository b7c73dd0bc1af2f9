package harness

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireToolsEnv, set to anything, makes a missing tool fail the tests
// instead of skipping them. ./test.sh sets it, as it installs the tools;
// so does a CI environment (CI set, as GitHub Actions and others do).
const RequireToolsEnv = "WAMP_OBSERVER_REQUIRE_TOOLS"

// toolsRequired tells whether a missing tool is a failure here.
func toolsRequired() bool { return os.Getenv(RequireToolsEnv) != "" || os.Getenv("CI") != "" }

// missing skips the test for want of something it needs, or fails it where
// tools are required.
func missing(t testing.TB, what string) {
	t.Helper()
	if toolsRequired() {
		t.Fatalf("%s (required: %s or CI is set)", what, RequireToolsEnv)
	}
	t.Skipf("%s; skipped (set %s=1 to fail instead)", what, RequireToolsEnv)
}

// RequireTool returns the path of the program name (a name on PATH or a
// path), or skips the test without it; where tools are required (see
// RequireToolsEnv) it fails the test instead.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" not found: ./test.sh installs it")
	}
	return path
}

// Process is a program run by the test (a PHP script, a Node script),
// read line by line; it is killed when the test ends, whatever happens,
// and its stderr is logged if the test failed.
type Process struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	lines  chan string   // stdout, line by line
	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited
}

// StartPHP runs a PHP script with php-cli, with env added to the test's
// environment.
func StartPHP(t testing.TB, env []string, script string, args ...string) *Process {
	t.Helper()
	return StartProcess(t, env, RequireTool(t, "php"), append([]string{script}, args...)...)
}

// StartProcess runs exe with args, with env added to the test's
// environment.
func StartProcess(t testing.TB, env []string, exe string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	name := strings.Join(args, " ")
	p := &Process{t: t, name: name, cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range p.lines {
		}
		<-p.exited
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, stderr.String())
		}
	})
	return p
}

// WaitLine waits for a stdout line starting with prefix, and returns it.
func (p *Process) WaitLine(prefix string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("%s exited before printing %q", p.name, prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
		case <-deadline:
			p.t.Fatalf("%s did not print %q within %v", p.name, prefix, timeout)
		}
	}
}

// Stop sends SIGTERM and waits for the summary line starting with
// summaryPrefix and a clean exit; it returns the summary.
func (p *Process) Stop(summaryPrefix string) string {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
	summary := p.WaitLine(summaryPrefix, 5*time.Second)
	p.ExitsCleanly()
	return summary
}

// ExitsCleanly waits for p, which has printed its last line, to exit 0.
func (p *Process) ExitsCleanly() {
	p.t.Helper()
	go func() { // anything printed after the last line must not block the exit
		for range p.lines {
		}
	}()
	select {
	case <-p.exited:
		if p.err != nil {
			p.t.Errorf("%s exited with %v", p.name, p.err)
		}
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s still running 10s after its last line", p.name)
	}
}

// Kill kills p with SIGKILL and waits until it has exited.
func (p *Process) Kill() {
	p.t.Helper()
	_ = p.cmd.Process.Kill()
	go func() {
		for range p.lines {
		}
	}()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("%s still running 10s after SIGKILL", p.name)
	}
}
