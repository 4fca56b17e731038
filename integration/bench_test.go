package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// The benchmarks measure the whole path — client → TLS → proxy → hub → smux
// → WebSocket → TLS → agent → local TCP server — and, in the same run, the
// same client against the same server directly. Run:
//
//	go test ./integration -run '^$' -bench . -count 5
//
// Figures are in README.md, "Performance".

// benchDevice is the device side: four local services on 127.0.0.1.
type benchDevice struct {
	source, sink, echo, hello uint16
}

// serveTCP runs handle for each connection to a new listener on 127.0.0.1
// (a device port) until the test ends, and returns its port.
func serveTCP(b testing.TB, handle func(net.Conn)) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func newBenchDevice(b testing.TB) benchDevice {
	zeros := make([]byte, 64<<10)
	return benchDevice{
		source: serveTCP(b, func(c net.Conn) { // sends until the client goes
			for {
				if _, err := c.Write(zeros); err != nil {
					return
				}
			}
		}),
		sink: serveTCP(b, func(c net.Conn) { // reads to EOF, then acknowledges
			io.Copy(io.Discard, c)
			c.Write([]byte{1})
		}),
		echo: serveTCP(b, func(c net.Conn) { io.Copy(c, c) }),
		hello: serveTCP(b, func(c net.Conn) { // first byte at once
			c.Write([]byte{1})
			io.Copy(io.Discard, c)
		}),
	}
}

// benchPath opens connections to a device service, either directly or
// through the reflector.
type benchPath struct {
	name string
	dial func(b *testing.B, port uint16) net.Conn
}

func benchPaths(b *testing.B) ([]benchPath, benchDevice) {
	dev := newBenchDevice(b)
	s := newStack(b)
	s.addUser("bench", "bench-pass", true)
	secret := s.addDevice(store.Device{ID: "bench"})
	s.startAgent(agent.Config{DeviceID: "bench", Secret: secret, Ports: []uint16{dev.source, dev.sink, dev.echo, dev.hello}})
	auth := basic("bench", "bench-pass")
	tlsConf := &tls.Config{RootCAs: s.pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	viaProxy := func(b *testing.B, raw func() (net.Conn, error), port uint16) net.Conn {
		c, err := raw()
		if err != nil {
			b.Fatal(err)
		}
		target := fmt.Sprintf("bench.localhost:%d", port)
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
		br := bufio.NewReaderSize(c, 64)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("CONNECT: %v %v", resp, err)
		}
		if br.Buffered() > 0 {
			return &bufferedConn{Conn: c, r: br}
		}
		return c
	}
	return []benchPath{
		{"direct", func(b *testing.B, port uint16) net.Conn {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				b.Fatal(err)
			}
			return c
		}},
		{"reflector-tls", func(b *testing.B, port uint16) net.Conn {
			return viaProxy(b, func() (net.Conn, error) { return tls.Dial("tcp", s.srv.Addr().String(), tlsConf) }, port)
		}},
		{"reflector-plain", func(b *testing.B, port uint16) net.Conn {
			return viaProxy(b, func() (net.Conn, error) { return net.Dial("tcp", s.srv.ProxyAddr().String()) }, port)
		}},
	}, dev
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

const chunk = 1 << 20

// readChunk reads one chunk from c through buf, as a client copying a
// download with a 64 KiB buffer does.
func readChunk(c net.Conn, buf []byte) error {
	for n := 0; n < chunk; {
		m, err := c.Read(buf[:min(len(buf), chunk-n)])
		if err != nil {
			return err
		}
		n += m
	}
	return nil
}

// benchDownload reads b.N chunks from c, a connection to the source port,
// and closes it.
func benchDownload(b *testing.B, c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		if err := readChunk(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// benchUpload writes b.N chunks to c, a connection to the sink port, waits
// for the sink's acknowledgement that all of it arrived, and closes c.
func benchUpload(b *testing.B, c net.Conn) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		for n := 0; n < chunk; n += len(buf) {
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Everything sent has arrived only when the sink acknowledges.
	c.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkDownload(b *testing.B) {
	paths, dev := benchPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			benchDownload(b, p.dial(b, dev.source))
		})
	}
}

func BenchmarkUpload(b *testing.B) {
	paths, dev := benchPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			benchUpload(b, p.dial(b, dev.sink))
		})
	}
}

func BenchmarkParallel8Download(b *testing.B) {
	paths, dev := benchPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			conns := make([]net.Conn, 8)
			for i := range conns {
				conns[i] = p.dial(b, dev.source)
				defer conns[i].Close()
			}
			b.SetBytes(8 * chunk)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64<<10)
					for range b.N {
						if err := readChunk(c, buf); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkEcho64 is the round trip of 64 bytes on an open connection.
func BenchmarkEcho64(b *testing.B) {
	paths, dev := benchPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			c := p.dial(b, dev.echo)
			defer c.Close()
			msg := make([]byte, 64)
			got := make([]byte, 64)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkOpen is a new connection to a device port up to its first byte:
// for the reflector, TCP (and TLS) to the proxy, CONNECT, the stream open
// and the agent's local dial.
func BenchmarkOpen(b *testing.B) {
	paths, dev := benchPaths(b)
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			one := make([]byte, 1)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				c := p.dial(b, dev.hello)
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				c.Close()
			}
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
