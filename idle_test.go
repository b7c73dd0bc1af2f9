package observer_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
)

// TestIdleHTTPConnectionsAreClosed: one complete request that is not an
// upgrade, then silence, on either port, used to hold its connection (and
// file descriptor) for good.
func TestIdleHTTPConnectionsAreClosed(t *testing.T) {
	in := harness.Start(t, harness.Config{Timeout: time.Second, IdleTimeout: 300 * time.Millisecond})
	for _, base := range []string{in.MetricsURL, "http" + strings.TrimPrefix(strings.TrimSuffix(in.WAMPURL, "/"), "ws")} {
		t.Run(base, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			rsp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, rsp.Body)
			rsp.Body.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("idle connection not closed by the server: %v", err)
			}
			t.Logf("closed after %v idle", time.Since(start))
		})
	}
}
