package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/reflector-dev/reflector/internal/tlsbatch"
	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

var (
	// errUnauthorized: the reflector answered 401 to the upgrade; the agent
	// waits at least the unauthorized delay before trying again.
	errUnauthorized = errors.New("device credentials refused (401)")
	// errThrottled: the reflector answered 429; see throttledError.
	errThrottled = errors.New("reflector is throttling this device's logins (429)")
	// errBusy: the reflector answered 503, busy with other agents'
	// handshakes (a reconnect storm); see throttledError.
	errBusy = errors.New("reflector is busy (503)")
	// errFingerprint: the reflector's leaf certificate does not match the
	// configured pin.
	errFingerprint = errors.New("reflector certificate does not match the configured fingerprint")
)

// throttledError is a refusal that says, in Retry-After, when to come
// back: a 429 (the reflector locked out the device's id or address after
// failed logins, issue 3, item 5), which unwraps to errThrottled, or a 503
// (the reflector holds as many handshakes as it can finish in time, issue
// 16), which unwraps to errBusy. Its text does not vary with the wait, so
// a repeated refusal is logged once.
type throttledError struct {
	after time.Duration // 0 when the reflector sent no Retry-After
	cause error         // errThrottled or errBusy
}

func (e *throttledError) Error() string { return e.cause.Error() }
func (e *throttledError) Unwrap() error { return e.cause }

const (
	// wsWriteBuffer holds one whole smux frame plus its 8-byte header and
	// the 14-byte WebSocket header: a client masks and writes in pieces of
	// this size, and 4 KiB pieces measured 4× slower (notes/go-libs.md §3).
	wsWriteBuffer = tunnel.MaxFrameSize + 8 + 14 + 64
	wsReadBuffer  = 64 << 10
	// maxMessage bounds one WebSocket message from the reflector: one smux
	// frame and its header, with room to spare.
	maxMessage = 1 << 20
)

// tunnelURL turns the reflector's base URL into the tunnel endpoint:
// https→wss, http→ws, and tunnel.Path appended to the base path.
func tunnelURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("reflector URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		u.Scheme = "wss"
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("reflector URL %q: scheme must be https or http", base)
	}
	if u.Host == "" {
		return "", fmt.Errorf("reflector URL %q: no host", base)
	}
	u.User = nil // never sent: gorilla refuses it, and the device authenticates by header
	u.Path = strings.TrimSuffix(u.Path, "/") + tunnel.Path
	u.RawPath = ""
	u.RawQuery = ""
	u.Fragment = ""
	return u.String(), nil
}

// upgradeHeader is the agent's upgrade request: credentials, allow-list,
// version and device properties (PROTOCOL.md, "Connect").
func upgradeHeader(cfg Config) http.Header {
	h := make(http.Header)
	h.Set("Authorization", tunnel.BasicCredentials(cfg.DeviceID, cfg.Secret))
	h.Set(tunnel.HeaderPorts, tunnel.FormatPorts(cfg.Ports))
	h.Set(tunnel.HeaderAgent, "reflector-agent/"+Version)
	for name, value := range cfg.Properties() {
		h.Set(tunnel.HeaderPropertyPrefix+name, value)
	}
	return h
}

// newDialer returns the WebSocket dialer of the tunnel: buffers sized for
// smux frames, no compression (the payload is mostly TLS already), TLS as
// configured and the proxy from the config or the environment. A valid
// local is the address connections are made from.
func newDialer(cfg Config, local netip.Addr) (*websocket.Dialer, error) {
	tlsConf, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &websocket.Dialer{
		Proxy: proxyFunc(cfg),
		// TLS runs over a tlsbatch.Conn, so each tunnel message (one smux
		// frame, up to five TLS records) goes out in one socket write.
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			if local.IsValid() {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
			}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return tlsbatch.New(c), nil
		},
		TLSClientConfig:   tlsConf,
		HandshakeTimeout:  cfg.ConnectTimeout,
		ReadBufferSize:    wsReadBuffer,
		WriteBufferSize:   wsWriteBuffer,
		Subprotocols:      []string{tunnel.Subprotocol},
		EnableCompression: false,
	}, nil
}

// proxyFunc is the proxy to reach the reflector through: the configured one,
// else HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment.
func proxyFunc(cfg Config) func(*http.Request) (*url.URL, error) {
	p := cfg.Proxy
	if p == nil {
		return http.ProxyFromEnvironment
	}
	// Both gorilla and net/http speak CONNECT to an http:// proxy, with
	// Basic auth taken from the URL.
	u := &url.URL{Scheme: "http", Host: net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))}
	if p.Username != "" {
		u.User = url.UserPassword(p.Username, p.Password)
	}
	return http.ProxyURL(u)
}

// newHTTPClient returns a client that reaches the reflector as the tunnel
// dialer d does: the same TLS verification (CA file, pin or insecure), the
// same proxy and connect timeout. Enrolment uses it, so an agent that
// enrols can connect and one that cannot connect does not enrol either.
// HTTP/1.1 only, as the reflector's listener (DESIGN.md, "Libraries").
func newHTTPClient(d *websocket.Dialer) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               d.Proxy,
			TLSClientConfig:     d.TLSClientConfig.Clone(),
			DialContext:         (&net.Dialer{Timeout: d.HandshakeTimeout}).DialContext,
			TLSHandshakeTimeout: d.HandshakeTimeout,
			ForceAttemptHTTP2:   false,
			MaxIdleConns:        1,
			IdleConnTimeout:     30 * time.Second,
		},
		// Connecting takes at most HandshakeTimeout; the answer is one small
		// database write away, so as long again is plenty.
		Timeout: 2 * d.HandshakeTimeout,
	}
}

// tlsConfig verifies the reflector against the system roots plus
// cfg.CAFile; or, with cfg.Fingerprint, against the pin alone (a
// self-signed reflector certificate has no chain to verify); or not at all
// with cfg.Insecure.
func tlsConfig(cfg Config) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if err := addCAs(pool, cfg.CAFile); err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	switch {
	case cfg.Fingerprint != "":
		pin, err := parseFingerprint(cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain and name verification: crypto/tls still
		// checks that the server holds the key of the certificate it sent,
		// and VerifyConnection checks that certificate is the pinned one.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errFingerprint
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
				return errFingerprint
			}
			return nil
		}
	case cfg.Insecure:
		conf.InsecureSkipVerify = true
	}
	return conf, nil
}

// addCAs adds the PEM certificates of path to pool. path is a file, or a
// directory (tls.caLocation of WebTunnelAgent may name one, as OpenSSL's
// CApath) whose regular files are all read; files without certificates are
// skipped there, but at least one certificate must be found.
func addCAs(pool *x509.CertPool, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("CA file: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("CA directory: %w", err)
		}
		files = files[:0]
		for _, e := range entries {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 { // c_rehash makes symlinks
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	found := false
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			if fi.IsDir() {
				continue // a dangling link or unreadable file among many
			}
			return fmt.Errorf("CA file: %w", err)
		}
		if pool.AppendCertsFromPEM(pem) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("CA file %s: no PEM certificate found", path)
	}
	return nil
}

// parseFingerprint reads "sha256:<64 hex>"; colons between the hex pairs
// (as openssl prints them) and upper case are accepted too.
func parseFingerprint(s string) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if !ok {
		return nil, fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", s)
	}
	pin, err := hex.DecodeString(strings.ReplaceAll(hexPart, ":", ""))
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", s)
	}
	return pin, nil
}

// dial opens the tunnel's WebSocket. A 401 answer becomes errUnauthorized,
// a 429 or a 503 a *throttledError with its Retry-After; any other refusal
// carries the reflector's status and first line of reason.
func (a *Agent) dial(ctx context.Context) (*websocket.Conn, error) {
	ws, resp, err := a.dialer.DialContext(ctx, a.url, a.header)
	if err != nil {
		if resp != nil {
			switch resp.StatusCode {
			case http.StatusUnauthorized:
				return nil, errUnauthorized
			case http.StatusTooManyRequests:
				after, _ := enroll.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
				return nil, &throttledError{after: after, cause: errThrottled}
			case http.StatusServiceUnavailable:
				// Without Retry-After (a reflector that cannot check
				// credentials now) after is 0: the normal backoff. The
				// reason, which names the wait, is left out so that the
				// refusal is logged once.
				after, _ := enroll.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
				return nil, &throttledError{after: after, cause: errBusy}
			}
			return nil, fmt.Errorf("reflector refused the tunnel: %s%s", resp.Status, reason(resp))
		}
		return nil, err
	}
	if ws.Subprotocol() != tunnel.Subprotocol {
		ws.Close()
		return nil, fmt.Errorf("reflector did not accept subprotocol %s", tunnel.Subprotocol)
	}
	ws.SetReadLimit(maxMessage)
	return ws, nil
}

// reason returns ": " and the first line of a refusal's body, if any, as
// text fit for a log line: control characters (a CRLF's \r among them)
// become blanks, invalid UTF-8 becomes U+FFFD, and it is cut to 200 bytes
// between characters. gorilla has already read up to 1 KiB of it into
// memory.
func reason(resp *http.Response) string {
	if resp.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	line = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || 0x7f <= r && r < 0xa0 { // C0, DEL, C1
			return ' '
		}
		return r // an invalid byte arrives as U+FFFD, and is written so
	}, line))
	if len(line) > 200 {
		cut := 200
		for cut > 0 && line[cut]&0xc0 == 0x80 { // a continuation byte: not a character's start
			cut--
		}
		line = strings.TrimSpace(line[:cut])
	}
	if line == "" {
		return ""
	}
	return ": " + line
}
