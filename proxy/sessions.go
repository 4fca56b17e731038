package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/reflector-dev/reflector/store"
)

// session is an open CONNECT stream or absolute-form request, kept so that
// Revalidate can end it when its credential no longer reaches its device: a
// token revoked, a user removed, a device moved to another group.
type session struct {
	cred   store.Credential
	device string
	cancel context.CancelFunc // ends the stream; safe to call more than once
	done   chan struct{}      // closed by cancel, when the owner must tell (absolute-form)
}

// sessions is the set of open sessions. It is touched once when a stream
// opens and once when it closes, never per byte.
type sessions struct {
	mu  sync.Mutex
	set map[*session]struct{}
}

func (s *sessions) add(x *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[*session]struct{})
	}
	s.set[x] = struct{}{}
}

func (s *sessions) remove(x *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.set, x)
}

func (s *sessions) snapshot() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.set))
	for x := range s.set {
		out = append(out, x)
	}
	return out
}

// Open returns the number of open CONNECT streams and absolute-form
// requests.
func (p *Proxy) Open() int {
	p.sessions.mu.Lock()
	defer p.sessions.mu.Unlock()
	return len(p.sessions.set)
}

// Revalidate checks every open stream and request again with Config.Recheck
// and ends those whose credential may no longer reach their device. It
// returns how many it ended. The server calls it after admin changes and
// periodically, so that expired tokens end too.
func (p *Proxy) Revalidate() int {
	if p.cfg.Recheck == nil {
		return 0
	}
	ended := 0
	for _, x := range p.sessions.snapshot() {
		if !p.cfg.Recheck(x.cred, x.device) {
			x.cancel()
			ended++
		}
	}
	if ended > 0 {
		p.cfg.Logger.Info("access revoked: streams closed", "count", ended)
	}
	return ended
}

// countingWriter counts the body bytes of a response and passes Flush and
// Hijack through, which goproxy needs for event streams and WebSocket.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes read from a request body. The Transport
// reads it on its own goroutine, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
