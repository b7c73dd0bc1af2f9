package metrics

import (
	"io"
	"log/slog"
	"testing"

	"go.uber.org/goleak"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
