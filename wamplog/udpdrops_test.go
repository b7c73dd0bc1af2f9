package wamplog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSocketDropsReadsTheLastColumnOfOurPort(t *testing.T) {
	// /proc/net/udp as Linux writes it: our socket on 127.0.0.1:6666 (0x1A0A),
	// another on 6667 (0x1A0B).
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:1A0B 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 9
  2: 0100007F:1A0A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 247330
`
	path := filepath.Join(t.TempDir(), "udp")
	if err := os.WriteFile(path, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, ok := socketDrops(path, 6666); !ok || n != 247330 {
		t.Errorf("drops %v %v, want 247330", n, ok)
	}
	if _, ok := socketDrops(path, 6668); ok {
		t.Error("found a socket that is not there")
	}
	if _, ok := socketDrops(filepath.Join(t.TempDir(), "missing"), 6666); ok {
		t.Error("read a missing file")
	}
}
