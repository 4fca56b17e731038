package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// newTransport builds the one http.Transport that carries forwarded HTTP
// requests, absolute-form and subdomain alike. It dials device streams only,
// never a further proxy or a real address, and keeps idle streams per
// device port for keep-alive reuse. The pool key is the request URL's
// host: "device:port" for plain HTTP (shared by both kinds of request) and
// "device.domain:port" for HTTPS, the full name being what the Transport
// sends as SNI.
func (p *Proxy) newTransport() *http.Transport {
	tlsConf := &tls.Config{
		// Device certificates are mostly self-signed; with --device-ca the
		// reflector verifies them against that pool and the device's name.
		InsecureSkipVerify: p.cfg.DeviceCAs == nil,
		RootCAs:            p.cfg.DeviceCAs,
		// Device firmware is often old. This leg runs from the agent to a
		// port on or beside the device, inside the tunnel's own TLS.
		MinVersion: tls.VersionTLS10,
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true) // device web servers get HTTP/1.1, never h2
	return &http.Transport{
		DialContext:         p.dialForHTTP,
		Proxy:               nil, // never a further proxy: only device streams
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		// Idle streams kept per device port for the next request: half of
		// a device's streams (tunnel.MaxDeviceStreams), so that keep-alive
		// never takes the streams CONNECTs need, and enough that 32
		// requests at a time reuse streams instead of opening one each
		// (with 16, the agent dialled the device's web server for most
		// requests: 114 µs of its CPU per request, 70 with 64; issue 21).
		MaxIdleConnsPerHost:   tunnel.MaxDeviceStreams / 2,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		// A device's response header is read into memory, per request;
		// Go's default allows 10 MiB. Beyond 1 MiB the user gets 502.
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // bodies pass through as the device sent them
		ForceAttemptHTTP2:      false,
		Protocols:              &protocols,
	}
}

// outboundHeader makes h, the header of a request on its way to a device,
// what a device may see, on both forwarding paths (absolute-form through
// goproxy, device hosts through ReverseProxy; issue 15, item 6):
//
//   - hop-by-hop headers go, those the request names in Connection among
//     them (RFC 9110 §7.6.1), proxy credentials too; a protocol upgrade
//     and "Te: trailers" stay, as ReverseProxy keeps them;
//   - every forwarding header the client sent goes (Forwarded,
//     X-Forwarded-*, X-Real-Ip): some device would believe it;
//   - the reflector's own X-Reflector-Authorization goes;
//   - ours are set: X-Forwarded-For is client, the address the router
//     resolved (behind a trusted reverse proxy, not the proxy), and
//     X-Forwarded-Host and -Proto are the host and scheme the client
//     asked for.
func outboundHeader(h http.Header, host, proto string, client netip.Addr) {
	upgrade := ""
	if headerHasToken(h["Connection"], "upgrade") {
		upgrade = h.Get("Upgrade")
	}
	trailers := headerHasToken(h["Te"], "trailers")
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgrade)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
	for name := range h {
		// Any forwarding header a client sends (X-Forwarded-Port,
		// X-Forwarded-Ssl, ...) would be believed by some device.
		if strings.HasPrefix(name, "X-Forwarded-") {
			delete(h, name)
		}
	}
	h.Del("Forwarded")
	h.Del("X-Real-Ip")
	h.Del(headerReflectorAuth)
	if client.IsValid() {
		h.Set("X-Forwarded-For", client.String())
	}
	h.Set("X-Forwarded-Host", host)
	h.Set("X-Forwarded-Proto", proto)
}

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1), with the
// non-standard ones clients still send; ReverseProxy's list.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// headerHasToken reports whether the comma-separated header values hold
// token, in any ASCII case.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if equalFoldASCII(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// maxResponseHeaderBytes bounds a device's response header (issue 15, item
// 7). Devices' web servers send a few KiB; a page that sets many cookies
// stays well below.
const maxResponseHeaderBytes = 1 << 20

// dialClientKey carries the client's address from begin to dialForHTTP,
// through the forwarded request's context.
type dialClientKey struct{}

// dialForHTTP opens a device stream for the Transport. addr is the
// "device:port" or "device.domain:port" that filterAbsolute or ServeDevice
// set after authorising the request; nothing else reaches here, and
// anything that does not name a device is refused all the same.
func (p *Proxy) dialForHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	t, err := resolveHost(addr, p.cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if t.port == 0 {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrBadTarget)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.OpenTimeout)
	defer cancel()
	client, _ := ctx.Value(dialClientKey{}).(netip.Addr)
	return p.cfg.Dial(ctx, t.device, t.port, client)
}

// copyBufferSize is the size of the buffers ReverseProxy copies responses
// through: a full one is one smux frame (tunnel.CopyBufferSize).
const copyBufferSize = tunnel.CopyBufferSize

// copyBuffers is ReverseProxy's BufferPool: one buffer per response body,
// reused across requests; nothing is allocated per chunk.
var copyBuffers bufferPool

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if bp, ok := b.pool.Get().(*[]byte); ok {
		return *bp
	}
	return make([]byte, copyBufferSize)
}

// Put keeps buf for the next response. The *[]byte it stores costs one
// small allocation per response, not per chunk.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) < copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.pool.Put(&buf)
}
