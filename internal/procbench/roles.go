package procbench

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// The first byte a load generator sends on a stream to the device server
// says what the server does with it.
const (
	modeDownload = 'D' // the server writes until the client closes
	modeUpload   = 'U' // the server reads and discards
	modeEcho     = 'E' // the server writes back what it reads
	modeOpen     = 'O' // the server answers one byte, then waits for the close
)

// chunk is the size of the writes of download and upload.
const chunk = 64 << 10

// page is what the device server's web server answers: 1 KiB.
var page = []byte(strings.Repeat("reflector bench page, 1 KiB of it. ", 30)[:1024])

// DeviceMain is the device-side server's process: a TCP server for the
// stream measurements and a web server for the HTTP ones, both on
// loopback. It prints "tcp=PORT http=PORT" and serves until its standard
// input closes (its parent has gone).
func DeviceMain(args []string) int {
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "device: listen:", err)
		return 1
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "device: listen:", err)
		return 1
	}
	fmt.Printf("tcp=%d http=%d\n", tl.Addr().(*net.TCPAddr).Port, hl.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go serveStream(c)
		}
	}()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(page)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(hl)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// serveStream serves one stream by the mode its first byte names.
func serveStream(c net.Conn) {
	defer c.Close()
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeDownload:
		buf := make([]byte, chunk)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	case modeUpload:
		io.Copy(io.Discard, c)
	case modeEcho:
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	case modeOpen:
		c.Write([]byte{1})
		io.Copy(io.Discard, c)
	}
}

// loadResult is what a load generator process prints, as JSON.
type loadResult struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	Ops     int     `json:"ops"`
	P50us   float64 `json:"p50us"`
	P99us   float64 `json:"p99us"`
}

// dialer opens a stream to the device server the way one system offers it.
type dialer struct {
	addr   string // where to connect
	target string // CONNECT's authority; "" to use addr as the stream
	tls    bool   // TLS to addr before CONNECT
	auth   string // user:password for Proxy-Authorization; "" for none
}

func (d dialer) dial() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", d.addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.addr, err)
	}
	if d.target == "" {
		return c, nil
	}
	if d.tls {
		// The reflector's self-signed certificate, on loopback: what is
		// measured is the handshake's cost, not who is trusted.
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS to %s: %w", d.addr, err)
		}
		c = tc
	}
	req := "CONNECT " + d.target + " HTTP/1.1\r\nHost: " + d.target + "\r\n"
	if d.auth != "" {
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(d.auth)) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %w", d.target, err)
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %w", d.target, err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s", d.target, resp.Status)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// bufferedConn reads what the CONNECT response's reader holds first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// LoadMain is the load generator's process: it runs one measurement
// (-test download, upload, parallel8, rtt or open) for -duration against
// the device server, reached directly or through a proxy, and prints a
// loadResult.
func LoadMain(args []string) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var d dialer
	test := fs.String("test", "download", "download, upload, parallel8, rtt or open")
	dur := fs.Duration("duration", 3*time.Second, "how long to measure")
	fs.StringVar(&d.addr, "addr", "", "address to connect to")
	fs.StringVar(&d.target, "connect", "", "CONNECT this authority first (through the proxy at -addr)")
	fs.BoolVar(&d.tls, "tls", false, "TLS to -addr before CONNECT")
	fs.StringVar(&d.auth, "auth", "", "user:password for Proxy-Authorization")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var res loadResult
	var err error
	switch *test {
	case "download":
		res, err = download(d, 1, *dur)
	case "parallel8":
		res, err = download(d, 8, *dur)
	case "upload":
		res, err = upload(d, *dur)
	case "rtt":
		res, err = roundTrips(d, *dur)
	case "open":
		res, err = opens(d, *dur)
	default:
		err = fmt.Errorf("unknown test %q", *test)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// download reads from n streams at once for dur.
func download(d dialer, n int, dur time.Duration) (loadResult, error) {
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := d.dial()
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close()
		if _, err := c.Write([]byte{modeDownload}); err != nil {
			return loadResult{}, fmt.Errorf("start download: %w", err)
		}
		conns[i] = c
	}
	// The first bytes arrive before the clock starts: what is measured is
	// the flow, not its start.
	for _, c := range conns {
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return loadResult{}, fmt.Errorf("download: %w", err)
		}
	}
	start := time.Now()
	end := start.Add(dur)
	var wg sync.WaitGroup
	totals := make([]int64, n)
	errs := make([]error, n)
	for i, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(end)
			buf := make([]byte, chunk)
			for {
				k, err := c.Read(buf)
				totals[i] += int64(k)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs[i] = err
					}
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return loadResult{}, fmt.Errorf("download: %w", err)
	}
	var sum int64
	for _, t := range totals {
		sum += t
	}
	return loadResult{Bytes: sum, Seconds: time.Since(start).Seconds()}, nil
}

// upload writes to one stream for dur.
func upload(d dialer, dur time.Duration) (loadResult, error) {
	c, err := d.dial()
	if err != nil {
		return loadResult{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{modeUpload}); err != nil {
		return loadResult{}, fmt.Errorf("start upload: %w", err)
	}
	buf := make([]byte, chunk)
	start := time.Now()
	c.SetWriteDeadline(start.Add(dur))
	var sum int64
	for {
		k, err := c.Write(buf)
		sum += int64(k)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return loadResult{}, fmt.Errorf("upload: %w", err)
			}
			break
		}
	}
	return loadResult{Bytes: sum, Seconds: time.Since(start).Seconds()}, nil
}

// roundTrips sends 64 bytes and waits for them back, over and over, on
// one stream for dur.
func roundTrips(d dialer, dur time.Duration) (loadResult, error) {
	c, err := d.dial()
	if err != nil {
		return loadResult{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return loadResult{}, fmt.Errorf("start echo: %w", err)
	}
	msg, back := make([]byte, 64), make([]byte, 64)
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < dur {
		t := time.Now()
		if _, err := c.Write(msg); err != nil {
			return loadResult{}, fmt.Errorf("echo: %w", err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return loadResult{}, fmt.Errorf("echo: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	return latencies(lat, time.Since(start)), nil
}

// opens opens a stream, asks for one byte and closes it, over and over
// for dur: the time from the dial to that byte, TLS and CONNECT included.
func opens(d dialer, dur time.Duration) (loadResult, error) {
	var lat []time.Duration
	one := make([]byte, 1)
	start := time.Now()
	for time.Since(start) < dur {
		t := time.Now()
		c, err := d.dial()
		if err != nil {
			return loadResult{}, err
		}
		_, err = c.Write([]byte{modeOpen})
		if err == nil {
			_, err = io.ReadFull(c, one)
		}
		lat = append(lat, time.Since(t))
		c.Close()
		if err != nil {
			return loadResult{}, fmt.Errorf("open: %w", err)
		}
	}
	return latencies(lat, time.Since(start)), nil
}

// latencies summarises lat, taken over elapsed.
func latencies(lat []time.Duration, elapsed time.Duration) loadResult {
	slices.Sort(lat)
	at := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Microsecond)
	}
	return loadResult{Ops: len(lat), Seconds: elapsed.Seconds(), P50us: at(0.50), P99us: at(0.99)}
}

// RelayMain is a plain TCP relay's process: every connection to its
// listener is joined to a new connection to -to, bytes copied both ways.
// Two in a row are the floor of the reflector's path: the same two extra
// processes and loopback hops, with no TLS, no multiplexing and no checks.
// It prints "port=PORT" and relays until its standard input closes.
func RelayMain(args []string) int {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	to := fs.String("to", "", "address to relay to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: listen:", err)
		return 1
	}
	fmt.Printf("port=%d\n", l.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", *to)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	return 0
}
