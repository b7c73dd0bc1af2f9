package router

import "sync"

// readPool holds the buffers clients' messages are read into. A buffer
// grown past maxPooledRead by a large message is left to the collector, so
// that the pool holds at most that much per buffer.
type readPool struct{ pool sync.Pool }

const (
	pooledReadSize = 4 << 10
	maxPooledRead  = 256 << 10
)

func (rp *readPool) get() *[]byte {
	if b, ok := rp.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, pooledReadSize)
	return &b
}

func (rp *readPool) put(b *[]byte) {
	if cap(*b) > maxPooledRead {
		return
	}
	*b = (*b)[:0]
	rp.pool.Put(b)
}
