package harness

import (
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/testkit"
)

// StockNexus is cmd/stocknexus, stock nexus's own WebsocketServer, running
// in a process of its own on a loopback port: an upstream router for the
// proxy (Config.Upstream) that nobody here wrote the WebSocket side of.
type StockNexus struct {
	URL  string // ws://127.0.0.1:port/
	t    testing.TB
	bin  string
	addr string
	proc *Process
}

// StartStockNexus builds cmd/stocknexus and runs it until the test ends,
// with args after its -wamp address.
func StartStockNexus(t testing.TB, args ...string) *StockNexus {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "stocknexus")
	build := exec.Command("go", "build", "-o", bin, "./cmd/stocknexus")
	build.Dir = filepath.Join(filepath.Dir(here), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cmd/stocknexus: %v\n%s", err, out)
	}
	addr := FreeAddr(t)
	s := &StockNexus{URL: "ws://" + addr + "/", t: t, bin: bin, addr: addr}
	s.Restart(args...)
	return s
}

// Restart starts the process again on the same address, after Kill.
func (s *StockNexus) Restart(args ...string) {
	s.t.Helper()
	s.proc = StartProcess(s.t, nil, s.bin, append([]string{"-wamp", s.addr}, args...)...)
	testkit.Eventually(s.t, 10*time.Second, "stock nexus listening on "+s.addr, func() (any, bool) {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			return err, false
		}
		c.Close()
		return nil, true
	})
}

// Kill kills the process at once (SIGKILL: no GOODBYE, no close frame),
// and waits until it has exited.
func (s *StockNexus) Kill() {
	s.t.Helper()
	s.proc.Kill()
}
