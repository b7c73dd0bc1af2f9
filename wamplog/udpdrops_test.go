package wamplog

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/procfs"
)

// fakeProc writes /proc/net/udp and, unless empty, udp6 into a directory
// of its own and returns it as a proc file system.
func fakeProc(t *testing.T, udp, udp6 string) procfs.FS {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "net"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, table := range map[string]string{"udp": udp, "udp6": udp6} {
		if table == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "net", name), []byte(table), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := procfs.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestUDPDropsAreOurSocketsFoundByInode(t *testing.T) {
	// As Linux writes them: two sockets share 127.0.0.1:6666 (0x1A0A,
	// SO_REUSEPORT), with inodes 1111 and 2222; one is on [::]:6666.
	const udp = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100007F:1A0A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1111 2 0000000000000000 9
  2: 0100007F:1A0A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 247330
`
	const udp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  3: 00000000000000000000000000000000:1A0A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3333 2 0000000000000000 5
`
	for _, tc := range []struct {
		name      string
		udp, udp6 string
		inode     uint64
		want      float64 // -1: not exported
	}{
		{"the second socket on a shared port", udp, udp6, 2222, 247330},
		{"the first socket on a shared port", udp, udp6, 1111, 9},
		{"an IPv6 socket", udp, udp6, 3333, 5},
		{"no IPv6 table", udp, "", 2222, 247330},
		{"a socket not listed", udp, udp6, 4444, -1},
		{"an inode not known", udp, udp6, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newUDPDropsCollectorFor(fakeProc(t, tc.udp, tc.udp6), tc.inode)
			n := testutil.CollectAndCount(c)
			switch {
			case tc.want < 0 && n != 0:
				t.Errorf("exported %d series, want none", n)
			case tc.want >= 0 && n != 1:
				t.Errorf("exported %d series, want 1", n)
			case tc.want >= 0:
				if got := testutil.ToFloat64(c); got != tc.want {
					t.Errorf("drops %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestUDPDropsOfARealSocket floods a socket nobody reads, with a small
// receive buffer, and expects the kernel's drops for it, not another's.
func TestUDPDropsOfARealSocket(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel reports drops per socket on Linux only")
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	conn := pc.(*net.UDPConn)
	if err := conn.SetReadBuffer(1); err != nil { // the kernel's minimum
		t.Fatal(err)
	}
	c, err := newUDPDropsCollector(conn)
	if err != nil || c.inode == 0 {
		t.Fatalf("no inode found for the socket: %v", err)
	}
	if got := testutil.ToFloat64(c); got != 0 {
		t.Fatalf("drops %v before any datagram, want 0", got)
	}
	out, err := net.Dial("udp", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	datagram := make([]byte, 1000)
	for range 200 { // far more than the minimum buffer holds
		if _, err := out.Write(datagram); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(c); got < 100 {
		t.Errorf("drops %v after 200 datagrams into a full queue, want at least 100", got)
	}
}
