package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// firehose listens on 127.0.0.1 and sends to every connection until it
// closes.
func firehose(t *testing.T) uint16 {
	return serveLocal(t, func(c net.Conn) {
		b := make([]byte, 64<<10)
		for {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	})
}

// TestStreamWriteAbandonedAtSessionCloseKeepsItsBuffer: when the agent's
// session closes, smux answers a stream's pending Write at once while its
// sender may still copy the frame into the connection; Join then gave the
// buffer back to its pool, and the next Join wrote into it under the
// sender (run with -race). A stream's Write now waits for the connection's
// last write. (The reflector's end, tunnel/smuxsession, returns from a
// write only once the connection is done with its buffer, on either end.)
func TestStreamWriteAbandonedAtSessionCloseKeepsItsBuffer(t *testing.T) {
	for _, stock := range []bool{true, false} {
		t.Run(fmt.Sprintf("stock=%v", stock), func(t *testing.T) { testWriteAbandoned(t, stock) })
	}
}

func testWriteAbandoned(t *testing.T, stock bool) {
	port := firehose(t)
	a := newTestAgent(t, port)
	a.opts.StockSmux = stock
	upgrader := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		sess := smuxsession.New(tunnel.NewWSConn(ws), smuxsession.Config{})
		go sess.Run()
		defer sess.Close()
		tun := tunnel.NewMuxTunnel(sess)
		var wg sync.WaitGroup
		for range 8 {
			st, err := tun.Open(r.Context(), port, "test")
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(io.Discard, st) })
		}
		wg.Wait()
	}))
	defer srv.Close()

	// Other Joins in the process take buffers from the pool and fill them.
	stop := make(chan struct{})
	var pumps sync.WaitGroup
	defer pumps.Wait()
	defer close(stop)
	for range 4 {
		pumps.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a1, a2 := net.Pipe()
				b1, b2 := net.Pipe()
				go io.Copy(io.Discard, a2)
				go func() { b2.Write(make([]byte, 256<<10)); b2.Close() }()
				tunnel.Join(context.Background(), a1, b1)
				a2.Close()
			}
		})
	}

	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	d := websocket.Dialer{WriteBufferSize: 64<<10 + 64, Subprotocols: []string{tunnel.Subprotocol}}
	for range 20 {
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.serve(ctx, ws) }()
		time.Sleep(20 * time.Millisecond) // streams open and flowing
		cancel()
		<-done
	}
}
