//go:build !linux

package router

import (
	"errors"
	"syscall"
)

// directWrites: without Linux's writev here, the writer writes everything,
// and the framing goroutine never writes itself (see batchConn).
const directWrites = false

const maxIovecs = 1024

func writev(syscall.RawConn, [][]byte, *[]syscall.Iovec, bool) (int, error) {
	return 0, errors.ErrUnsupported
}
