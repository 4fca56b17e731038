package swarm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
	"github.com/reflector-dev/reflector/tunnel/webtunnel"
)

// wtDomain is the @domain of the simulated agents' user name: WebTunnelAgent
// sends "${webtunnel.deviceId}@${webtunnel.domain}", a UUID.
const wtDomain = "00000000-0000-0000-0000-000000000000"

// wtAgent is a simulated macchina.io WebTunnelAgent that connects and then
// stays idle: its upgrade is the one captured from WebTunnelAgent 2.5.0
// (integration/testdata/macchina-sdk-2.5.0/README.md: POST, the server
// subprotocol, Basic "deviceId@domain:password", properties as
// X-PTTH-Set-Property, X-WebTunnel-KeepAlive: 300), and it pings after the
// keep-alive the reflector answers, as the real agent does. Channels the
// reflector opens are not answered: a swarm is idle.
//
// Unlike the real agent (which retries after 1–1.5 s), it retries with
// full jitter, doubling from Options.BaseDelay, and honours Retry-After on
// 429 and 503, as the issue asks of every agent in a storm.
type wtAgent struct {
	i      int
	dev    device
	url    string
	header http.Header
	dialer *websocket.Dialer
	opts   Backoff
	fleet  *fleet
}

// Backoff are the reconnect delays of the simulated WebTunnelAgents. Zero
// fields take the defaults of our agent (1 s doubling to 60 s, 60 s after
// a 401).
type Backoff struct {
	BaseDelay, MaxDelay, UnauthorizedDelay time.Duration
}

func (b *Backoff) defaults() {
	if b.BaseDelay <= 0 {
		b.BaseDelay = time.Second
	}
	if b.MaxDelay <= 0 {
		b.MaxDelay = time.Minute
	}
	if b.UnauthorizedDelay <= 0 {
		b.UnauthorizedDelay = time.Minute
	}
}

func newWTAgent(i int, dev device, addr, fingerprint string, opts Backoff, f *fleet) (*wtAgent, error) {
	pin, err := parsePin(fingerprint)
	if err != nil {
		return nil, err
	}
	local := loopback(i)
	conf := &tls.Config{
		InsecureSkipVerify: true, // pinned below instead, as the reflector's self-signed certificate is
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errors.New("certificate does not match the fingerprint")
			}
			return nil
		},
		NextProtos: []string{"http/1.1"},
	}
	h := http.Header{}
	h.Set("Authorization", tunnel.BasicCredentials(dev.id+"@"+wtDomain, dev.secret))
	h.Add(webtunnel.HeaderProperty, "device;targetHost=127.0.0.1")
	h.Add(webtunnel.HeaderProperty, "device;targetPorts=22, 80")
	h.Add(webtunnel.HeaderProperty, "device;httpPort=80")
	h.Add(webtunnel.HeaderProperty, fmt.Sprintf(`device;name="Swarm %d"`, i))
	h.Set("User-Agent", "WebTunnelAgent/2.5.0 (swarm) POCO/1.11.10")
	h.Set(webtunnel.HeaderKeepAlive, "300")
	opts.defaults()
	return &wtAgent{
		i: i, dev: dev, opts: opts, fleet: f, header: h,
		url: "wss://" + addr + "/",
		dialer: &websocket.Dialer{
			NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				tc := tls.Client(c, conf)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return nil, err
				}
				return &postConn{Conn: tc}, nil
			},
			HandshakeTimeout: 10 * time.Second,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
			Subprotocols:     []string{webtunnel.ServerSubprotocol},
		},
	}, nil
}

// run connects and reconnects until ctx ends.
func (a *wtAgent) run(ctx context.Context) {
	bound := a.opts.BaseDelay
	next := func() time.Duration { // full jitter: uniform in [0, bound)
		d := time.Duration(rand.Int64N(int64(bound)))
		bound = min(2*bound, a.opts.MaxDelay)
		return d
	}
	for {
		ws, keepAlive, err := a.dial(ctx)
		if ctx.Err() != nil {
			if ws != nil {
				ws.Close()
			}
			return
		}
		var delay time.Duration
		if err == nil {
			a.fleet.connected(a.i)
			start := time.Now()
			a.serve(ctx, ws, keepAlive)
			a.fleet.disconnected(a.i)
			if ctx.Err() != nil {
				return
			}
			if time.Since(start) >= 30*time.Second {
				bound = a.opts.BaseDelay
			}
			delay = next()
		} else {
			a.fleet.failed(err)
			var re *refusedError
			switch {
			case errors.As(err, &re) && re.status == http.StatusUnauthorized:
				u := a.opts.UnauthorizedDelay
				delay = u + time.Duration(rand.Int64N(int64(u/2)))
			case errors.As(err, &re) && re.retryAfter > 0:
				delay = max(re.retryAfter+time.Duration(rand.Int64N(int64(re.retryAfter/4)+1)), next())
			default:
				delay = next()
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refusedError is an upgrade the reflector answered with another status
// than 101.
type refusedError struct {
	status     int
	retryAfter time.Duration // from Retry-After on 429 and 503
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("reflector refused the tunnel: %d %s", e.status, http.StatusText(e.status))
}

// dial upgrades and returns the WebSocket with the keep-alive the reflector
// answered.
func (a *wtAgent) dial(ctx context.Context) (*websocket.Conn, time.Duration, error) {
	ws, resp, err := a.dialer.DialContext(ctx, a.url, a.header)
	if err != nil {
		if resp != nil {
			re := &refusedError{status: resp.StatusCode}
			if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
				re.retryAfter, _ = enroll.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
			}
			return nil, 0, re
		}
		return nil, 0, err
	}
	if ws.Subprotocol() != webtunnel.ServerSubprotocol {
		ws.Close()
		return nil, 0, fmt.Errorf("reflector did not accept subprotocol %s", webtunnel.ServerSubprotocol)
	}
	keepAlive := 300 * time.Second
	if n, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get(webtunnel.HeaderKeepAlive))); err == nil && n > 0 {
		keepAlive = time.Duration(n) * time.Second
	}
	return ws, keepAlive, nil
}

// serve keeps the tunnel until it ends or ctx does: it reads (and drops)
// whatever the reflector sends, and pings every keepAlive, which is what
// an idle WebTunnelAgent sends.
func (a *wtAgent) serve(ctx context.Context, ws *websocket.Conn, keepAlive time.Duration) {
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)) != nil {
					ws.Close()
					return
				}
			}
		}
	}()
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			ws.Close()
			return
		}
		io.Copy(io.Discard, r)
	}
}

// postConn turns gorilla's upgrade, always a GET, into WebTunnelAgent's
// POST, so the reflector sees the request the real agent sends. gorilla
// writes the whole request in its first Write (http.Request.Write through
// one bufio.Writer).
type postConn struct {
	net.Conn
	written bool
}

func (c *postConn) Write(p []byte) (int, error) {
	if c.written {
		return c.Conn.Write(p)
	}
	c.written = true
	rest, ok := bytes.CutPrefix(p, []byte("GET "))
	if !ok {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(append([]byte("POST "), rest...))
	if err != nil {
		return max(n-1, 0), err
	}
	return len(p), nil
}

// parsePin reads "sha256:<64 hex>", as the reflector prints it.
func parsePin(fp string) ([]byte, error) {
	pin, err := hex.DecodeString(strings.TrimPrefix(fp, "sha256:"))
	if err != nil || len(pin) != sha256.Size || !strings.HasPrefix(fp, "sha256:") {
		return nil, fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", fp)
	}
	return pin, nil
}
