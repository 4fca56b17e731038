package smuxsession_test

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
	"github.com/xtaci/smux"
)

// BenchmarkTransfer compares this end with stock smux's server end over the
// same TLS WebSocket to a stock smux agent, in one process, so that both
// see the same machine: run with -count and compare each pair.
//
//	go test ./tunnel/smuxsession -run '^$' -bench Transfer -count 5
func BenchmarkTransfer(b *testing.B) {
	const size = 4 << 20
	for _, end := range []string{"smux", "smuxsession"} {
		open := benchLink(b, end)
		b.Run(end+"/download", func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, tunnel.CopyBufferSize)
			for b.Loop() {
				st, err := open()
				if err != nil {
					b.Fatal(err)
				}
				var req [9]byte
				req[0] = 'd'
				binary.BigEndian.PutUint64(req[1:], size)
				st.Write(req[:])
				if n, err := io.CopyBuffer(io.Discard, onlyReader{st}, buf); n != size {
					b.Fatalf("downloaded %d of %d: %v", n, size, err)
				}
				st.Close()
			}
		})
		b.Run(end+"/upload", func(b *testing.B) {
			b.SetBytes(size)
			buf := make([]byte, tunnel.CopyBufferSize)
			for b.Loop() {
				st, err := open()
				if err != nil {
					b.Fatal(err)
				}
				st.Write([]byte{'u'})
				for sent := 0; sent < size; sent += len(buf) {
					if _, err := st.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				st.(interface{ CloseWrite() error }).CloseWrite()
				if _, err := io.ReadFull(st, buf[:1]); err != nil {
					b.Fatal(err)
				}
				st.Close()
			}
		})
	}
}

type onlyReader struct{ io.Reader }

// benchLink connects a stock smux agent to a reflector end of the kind
// named and returns how to open a stream on it.
func benchLink(b *testing.B, end string) func() (net.Conn, error) {
	opens := make(chan func() (net.Conn, error), 1)
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: tunnel.MaxFrameSize + 64, WriteBufferPool: &sync.Pool{}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(tunnel.MaxMessage)
		conn := tunnel.NewWSConn(ws)
		if end == "smux" {
			sess, _ := smux.Server(conn, tunnel.MuxConfig())
			opens <- func() (net.Conn, error) { return sess.OpenStream() }
			<-sess.CloseChan()
			return
		}
		sess := smuxsession.New(conn, serverConfig())
		opens <- func() (net.Conn, error) { return sess.OpenStream(b.Context()) }
		sess.Run()
	}))
	b.Cleanup(srv.Close)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, WriteBufferSize: 64<<10 + 64}
	ws, _, err := d.Dial("wss"+strings.TrimPrefix(srv.URL, "https"), nil)
	if err != nil {
		b.Fatal(err)
	}
	agent, err := smux.Client(tunnel.NewWSConn(ws), tunnel.MuxConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { agent.Close() })
	go func() {
		for {
			st, err := agent.AcceptStream()
			if err != nil {
				return
			}
			go benchDevice(st)
		}
	}()
	return <-opens
}

// benchDevice serves one stream: 'd' and a length sends that many bytes,
// 'u' reads to EOF and answers one byte.
func benchDevice(st *smux.Stream) {
	defer st.Close()
	buf := make([]byte, tunnel.CopyBufferSize)
	if _, err := io.ReadFull(st, buf[:1]); err != nil {
		return
	}
	switch buf[0] {
	case 'd':
		io.ReadFull(st, buf[:8])
		for left := int(binary.BigEndian.Uint64(buf[:8])); left > 0; {
			n, err := st.Write(buf[:min(left, len(buf))])
			if err != nil {
				return
			}
			left -= n
		}
	case 'u':
		io.CopyBuffer(io.Discard, onlyReader{st}, buf)
		st.Write(buf[:1])
	}
}
