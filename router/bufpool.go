package router

import "sync"

// copyBufferSize is the size of the buffers response bodies are copied
// through, as ReverseProxy's own default.
const copyBufferSize = 32 << 10

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
