package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Config is a client of one reflector.
type Config struct {
	// URL is the reflector's TLS listener, https://host:port
	// (NormalizeURL's form).
	URL string
	// User and Token are the credentials: the proxy's Basic user:token
	// and the API's bearer. With User "" the token is sent as a Bearer
	// proxy credential.
	User, Token string
	// Trust decides which certificates of the reflector are accepted.
	Trust Trust
	// Proxy returns the HTTP proxy to reach the reflector through, nil
	// for none. Nil: from HTTPS_PROXY and NO_PROXY (ProxyFromEnvironment).
	Proxy func(reflector *url.URL) (*url.URL, error)
	// DialTimeout bounds reaching the reflector, its TLS handshake and
	// its answer to a CONNECT; zero means 15 seconds.
	DialTimeout time.Duration
}

// ProxyFromEnvironment is the proxy for the reflector in HTTPS_PROXY
// (https_proxy), unless NO_PROXY names it, as curl and Go's programs read
// them. Unlike net/http's, it honours them for a reflector on loopback too:
// a user who sets HTTPS_PROXY for this command means it.
func ProxyFromEnvironment(reflector *url.URL) (*url.URL, error) {
	cfg := httpproxy.FromEnvironment()
	if cfg.HTTPSProxy == "" {
		return nil, nil
	}
	if !strings.Contains(cfg.HTTPSProxy, "://") {
		cfg.HTTPSProxy = "http://" + cfg.HTTPSProxy
	}
	if cfg.NoProxy != "" {
		// httpproxy skips loopback whatever the configuration: ask it
		// only whether NO_PROXY excludes the reflector.
		if p, err := cfg.ProxyFunc()(reflector); err == nil && p == nil && !isLoopback(reflector.Hostname()) {
			return nil, nil
		}
	}
	u, err := url.Parse(cfg.HTTPSProxy)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("HTTPS_PROXY %q: want http://host:port", cfg.HTTPSProxy)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Client reaches devices through one reflector. It is safe for concurrent
// use.
type Client struct {
	cfg   Config
	url   *url.URL
	addr  string // host:port of the reflector
	tls   *tls.Config
	proxy *url.URL // nil: direct
	auth  string   // Proxy-Authorization value
}

// New checks cfg and makes a client. It reads the CA file and the proxy
// setting now; it does not connect.
func New(cfg Config) (*Client, error) {
	norm, err := NormalizeURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(norm)
	c := &Client{cfg: cfg, url: u, addr: u.Host}
	if c.cfg.DialTimeout == 0 {
		c.cfg.DialTimeout = 15 * time.Second
	}
	if c.tls, err = cfg.Trust.tlsConfig(c.addr); err != nil {
		return nil, err
	}
	proxy := cfg.Proxy
	if proxy == nil {
		proxy = ProxyFromEnvironment
	}
	if c.proxy, err = proxy(u); err != nil {
		return nil, err
	}
	switch {
	case cfg.User != "":
		c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.User+":"+cfg.Token))
	case cfg.Token != "":
		c.auth = "Bearer " + cfg.Token
	}
	return c, nil
}

// URL is the reflector's URL, https://host:port.
func (c *Client) URL() string { return c.url.String() }

// DialReflector opens a TLS connection to the reflector, through the
// proxy when there is one. A certificate the trust settings refuse is a
// *FingerprintError; a failure to connect wraps ErrUnreachable.
func (c *Client) DialReflector(ctx context.Context) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	raw, err := c.dialTCP(ctx)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, c.tls)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		var fe *FingerprintError
		if errors.As(err, &fe) {
			return nil, fe
		}
		return nil, fmt.Errorf("%w at %s: TLS handshake: %w", ErrUnreachable, c.addr, err)
	}
	return conn, nil
}

// dialTCP connects to the reflector, or to the proxy and through it with
// CONNECT.
func (c *Client) dialTCP(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	if c.proxy == nil {
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.addr, err)
		}
		return conn, nil
	}
	paddr := c.proxy.Host
	if c.proxy.Port() == "" {
		port := "80"
		if c.proxy.Scheme == "https" {
			port = "443"
		}
		paddr = net.JoinHostPort(c.proxy.Hostname(), port)
	}
	conn, err := d.DialContext(ctx, "tcp", paddr)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: proxy %s: %w", ErrUnreachable, c.addr, paddr, err)
	}
	if c.proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: c.proxy.Hostname(), NextProtos: []string{"http/1.1"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("%w at %s: proxy %s: TLS handshake: %w", ErrUnreachable, c.addr, paddr, err)
		}
		conn = tc
	}
	auth := ""
	if u := c.proxy.User; u != nil {
		pw, _ := u.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw))
	}
	out, err := connect(ctx, conn, c.addr, auth)
	if err != nil {
		conn.Close()
		var se *StatusError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%w at %s: the proxy %s refused CONNECT: %s", ErrUnreachable, c.addr, paddr, se)
		}
		return nil, fmt.Errorf("%w at %s: proxy %s: %w", ErrUnreachable, c.addr, paddr, err)
	}
	return out, nil
}

// Dial opens a stream to port of device through the reflector's proxy. The
// device may be given as its id or as a host name under the reflector's
// domain (pump-17.devices.example.com); only the id (the first label) is
// sent. A refusal is a *StatusError with the reflector's reason.
func (c *Client) Dial(ctx context.Context, device string, port int) (net.Conn, error) {
	id := DeviceID(device)
	if id == "" || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("device %q port %d: want a device id and a port 1-65535", device, port)
	}
	conn, err := c.DialReflector(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	out, err := connect(ctx, conn, net.JoinHostPort(id, strconv.Itoa(port)), c.auth)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s port %d: %w", id, port, err)
	}
	return out, nil
}

// DeviceID is the device id in a name: "pump-17" of
// "pump-17.devices.example.com", of "pi@pump-17" and of "pump-17".
func DeviceID(name string) string {
	_, name = SplitTarget(name)
	id, _, _ := strings.Cut(name, ".")
	return strings.ToLower(id)
}

// maxReason bounds the refusal body read for its reason.
const maxReason = 512

// connect sends CONNECT target on conn and reads the answer. On 200 it
// returns conn, or a conn that first hands out the bytes read beyond the
// answer. Anything else is a *StatusError with the answer's first line of
// body as its reason. ctx's deadline bounds the exchange.
func connect(ctx context.Context, conn net.Conn, target, auth string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: reflector-remote\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: %s\r\n", auth)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, fmt.Errorf("send CONNECT: %w", ctxErr(ctx, err))
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("read the answer to CONNECT: %w", ctxErr(ctx, err))
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
		resp.Body.Close()
		reason, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return nil, &StatusError{Status: resp.StatusCode, Reason: strings.TrimSpace(reason)}
	}
	if br.Buffered() == 0 {
		return conn, nil
	}
	return &bufferedConn{Conn: conn, r: io.MultiReader(io.LimitReader(br, int64(br.Buffered())), conn)}, nil
}

// ctxErr is ctx's error when ctx has ended (the deadline that stopped err
// was ours), else err.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// bufferedConn is a conn whose first bytes were read with the CONNECT
// answer.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the conn underneath, when it can.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("cannot half-close")
}
