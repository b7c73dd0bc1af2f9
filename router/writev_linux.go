package router

import (
	"os"
	"syscall"
	"unsafe"
)

// directWrites: the goroutine that frames a message writes it itself,
// without blocking (see batchConn).
const directWrites = true

// maxIovecs is IOV_MAX on Linux: the most pieces one writev takes.
const maxIovecs = 1024

// writev writes pieces to raw's socket with writev, as far as it takes them
// without waiting, or, with block, all of them, waiting for the socket
// (within its write deadline). It returns the bytes written. iov is
// scratch for the vector, kept by the caller between calls.
func writev(raw syscall.RawConn, pieces [][]byte, iov *[]syscall.Iovec, block bool) (int, error) {
	written, total := 0, 0
	for _, p := range pieces {
		total += len(p)
	}
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for written < total {
			v := vector(*iov, pieces, written)
			*iov = v
			n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
			clear(v) // no pointers into the pieces stay behind
			switch errno {
			case 0:
				written += int(n)
				if !block && written < total {
					return true // short: the next would find the socket full
				}
			case syscall.EINTR:
			case syscall.EAGAIN:
				return !block // false: wait until the socket takes more
			default:
				werr = os.NewSyscallError("writev", errno)
				return true
			}
		}
		return true
	})
	if werr != nil {
		return written, werr
	}
	return written, err
}

// vector fills v with the pieces from byte offset skip on, at most
// maxIovecs of them.
func vector(v []syscall.Iovec, pieces [][]byte, skip int) []syscall.Iovec {
	v = v[:0]
	for _, p := range pieces {
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		p = p[skip:]
		skip = 0
		vec := syscall.Iovec{Base: &p[0]}
		vec.SetLen(len(p))
		if v = append(v, vec); len(v) == maxIovecs {
			break
		}
	}
	return v
}
