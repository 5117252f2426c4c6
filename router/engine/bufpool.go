package engine

import "sync"

// copyBufferSize is the size of the buffers response bodies are copied
// through: one per response being sent, as nginx's default proxy_buffers
// (8 x 4 or 8 KB). Twice ReverseProxy's default, it halves the writes (and
// TLS flushes) of a large response: 25% less CPU per 100 KB response in
// scripts/bench/router.
const copyBufferSize = 64 << 10

// CopyBuffers is shared by the front and ReverseProxy.
var CopyBuffers = newBufferPool()

// bufferPool lends ReverseProxy its copy buffers, so that a response does
// not allocate (and the garbage collector reclaim) 32 KB each time.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}}
}

func (b *bufferPool) Get() []byte { return *b.p.Get().(*[]byte) }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == copyBufferSize {
		buf = buf[:copyBufferSize]
		b.p.Put(&buf)
	}
}
