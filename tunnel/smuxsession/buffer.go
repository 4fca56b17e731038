package smuxsession

import (
	"math/bits"
	"sync"
)

// Received payloads wait in pooled buffers of power-of-two sizes, from
// 1<<minClassShift up to one whole frame (64 KiB), so a stream holds
// buffers only while it holds data, and a small frame does not pin 64 KiB.
const (
	minClassShift = 9 // 512 bytes
	maxClassShift = 16
)

var bufPools [maxClassShift - minClassShift + 1]sync.Pool

// classOf is the index in bufPools of the smallest class holding n bytes.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// getBuf returns a buffer of length n (at most 64 KiB) from the pools. The
// caller owns it until putBuf.
func getBuf(n int) *[]byte {
	c := classOf(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(b *[]byte) {
	c := classOf(cap(*b))
	if cap(*b) != 1<<(c+minClassShift) {
		return // not one of ours
	}
	*b = (*b)[:0]
	bufPools[c].Put(b)
}

// chunk is one received payload: (*buf)[off:] is not read yet.
type chunk struct {
	buf *[]byte
	off int
}

// recvQueue is what a stream holds received and not yet read. Its methods
// run under the stream's lock.
type recvQueue struct {
	chunks []chunk
	head   int // chunks[:head] are read and gone
	held   int // bytes not read
}

// coalesceMax is the largest payload copied into the last chunk's spare
// room rather than queued as a chunk of its own: a peer writing tiny
// frames then costs bytes, not a buffer and a slot per frame.
const coalesceMax = 2 << 10

// push appends a payload; the queue takes b, or copies it and returns it
// to its pool.
func (q *recvQueue) push(b *[]byte) {
	n := len(*b)
	q.held += n
	if last := len(q.chunks) - 1; last >= q.head && n <= coalesceMax {
		tail := q.chunks[last].buf
		if cap(*tail)-len(*tail) >= n {
			*tail = append(*tail, *b...)
			putBuf(b)
			return
		}
	}
	q.chunks = append(q.chunks, chunk{buf: b})
}

// read copies held bytes into p, returning each chunk to its pool once read.
func (q *recvQueue) read(p []byte) int {
	n := 0
	for n < len(p) && q.head < len(q.chunks) {
		c := &q.chunks[q.head]
		m := copy(p[n:], (*c.buf)[c.off:])
		n += m
		c.off += m
		if c.off == len(*c.buf) {
			putBuf(c.buf)
			*c = chunk{}
			q.head++
		}
	}
	q.held -= n
	q.compact()
	return n
}

// drop returns every held buffer to its pool and the number of bytes they held.
func (q *recvQueue) drop() int {
	for i := q.head; i < len(q.chunks); i++ {
		putBuf(q.chunks[i].buf)
	}
	n := q.held
	*q = recvQueue{}
	return n
}

// compact lets go of the chunk slice once drained, and moves the unread
// chunks to the front when more than half of it is read.
func (q *recvQueue) compact() {
	switch {
	case q.head == len(q.chunks):
		if cap(q.chunks) > 16 {
			q.chunks = nil
		} else {
			clear(q.chunks)
			q.chunks = q.chunks[:0]
		}
		q.head = 0
	case q.head > len(q.chunks)/2:
		m := copy(q.chunks, q.chunks[q.head:])
		clear(q.chunks[m:])
		q.chunks = q.chunks[:m]
		q.head = 0
	}
}
