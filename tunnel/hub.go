package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Tunnel is one connected device tunnel, of whichever wire kind. The hub and
// everything above it know devices only through this interface.
type Tunnel interface {
	// Open opens a stream to port of the device and returns once the device
	// has answered: with a connection on success, with an *OpenError (or
	// ErrTimeout when ctx ends first) otherwise. client is the user's
	// address, for the device's log.
	Open(ctx context.Context, port uint16, client string) (net.Conn, error)
	// Close closes the tunnel and every stream in it.
	Close() error
	// Done is closed when the tunnel has ended, for whatever reason.
	Done() <-chan struct{}
}

// DeviceInfo is what a device declared when its tunnel connected, with the
// ports and properties it has updated since (WebTunnel property frames).
type DeviceInfo struct {
	Kind         string            // wire kind: "reflector.v1" or "webtunnel"
	RemoteAddr   string            // the agent's address as seen by the reflector
	AgentVersion string            // free text from the agent
	Ports        []uint16          // the agent's allow-list
	Properties   map[string]string // deviceName, httpPort, sshPort, ...
}

// DeviceStatus is a snapshot of one connected device.
type DeviceStatus struct {
	ID             string
	ConnectedSince time.Time
	DeviceInfo
	OpenStreams int64 // open or being opened; at most MaxDeviceStreams
	BytesIn     int64 // from the device to users
	BytesOut    int64 // from users to the device
}

// Hub is the registry of connected devices. Dial is the single path from a
// user to a device port. The hub's lock guards only the map; streams, once
// open, never touch it.
type Hub struct {
	logger *slog.Logger

	mu      sync.RWMutex
	devices map[string]*connected
	kinds   map[string]*kindStats // by DeviceInfo.Kind; entries are never removed
	closed  bool                  // Close has run: Register closes new tunnels at once

	// registered counts registrations not yet unregistered, so that Close
	// can wait for every endpoint that serves a tunnel to finish with it.
	registered sync.WaitGroup

	offline atomic.Int64 // Dial of a device not connected
}

// connected is one registered tunnel and its counters.
type connected struct {
	id     string
	tunnel Tunnel
	info   atomic.Pointer[DeviceInfo] // replaced whole, never changed in place
	since  time.Time
	kind   *kindStats

	streams  atomic.Int64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
}

// NewHub returns an empty hub. kinds are the wire kinds (DeviceInfo.Kind)
// its metrics list from the start, before a device of that kind connects.
// A nil logger discards.
func NewHub(logger *slog.Logger, kinds ...string) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{logger: logger, devices: make(map[string]*connected), kinds: make(map[string]*kindStats)}
	for _, k := range kinds {
		h.kinds[k] = &kindStats{}
	}
	return h
}

// Registration is the handle of one registered tunnel.
type Registration struct {
	hub  *Hub
	c    *connected
	once sync.Once
}

// Register makes t the device's tunnel. An older tunnel of the same device is
// replaced and closed: the newest connection is the one the agent uses.
func (h *Hub) Register(id string, t Tunnel, info DeviceInfo) *Registration {
	c := &connected{id: id, tunnel: t, since: time.Now()}
	c.info.Store(&info)
	h.mu.Lock()
	c.kind = h.kinds[info.Kind]
	if c.kind == nil {
		c.kind = &kindStats{}
		h.kinds[info.Kind] = c.kind
	}
	c.kind.connects.Add(1)
	reg := &Registration{hub: h, c: c}
	if h.closed {
		h.mu.Unlock()
		// Shutting down: the tunnel is closed unregistered (Close may
		// have returned already), and Unregister has nothing to do.
		reg.once.Do(func() {})
		t.Close()
		return reg
	}
	h.registered.Add(1)
	old := h.devices[id]
	h.devices[id] = c
	if old != nil {
		old.retire()
	}
	h.mu.Unlock()
	if old != nil {
		h.logger.Info("device tunnel replaced by a newer one", "device", id,
			"old_remote", old.info.Load().RemoteAddr, "remote", info.RemoteAddr)
		old.tunnel.Close()
	}
	return reg
}

// Unregister removes the tunnel from the hub if it is still the device's
// current one (a replaced tunnel must not remove its successor) and closes
// it. The endpoint calls it last, once it is done with the tunnel; calls
// after the first do nothing.
func (r *Registration) Unregister() {
	r.once.Do(func() {
		h := r.hub
		h.mu.Lock()
		if h.devices[r.c.id] == r.c {
			delete(h.devices, r.c.id)
			r.c.retire()
		}
		h.mu.Unlock()
		r.c.tunnel.Close()
		h.registered.Done()
	})
}

// Update replaces the allow-list and properties the device declared, for
// a device that declares them again while connected (a WebTunnelAgent's
// property update frame). Kind, address and agent version stay. Streams
// already open are not affected; the next Dial checks the new ports. One
// goroutine, the tunnel's reader, calls it.
func (r *Registration) Update(ports []uint16, properties map[string]string) {
	info := *r.c.info.Load()
	info.Ports = slices.Clone(ports)
	info.Properties = maps.Clone(properties)
	r.c.info.Store(&info)
}

// Dial opens a stream to port of the device for a user at client (the
// address the agent logs; ClientAddr). Errors wrap ErrDeviceOffline,
// ErrPortNotAllowed, ErrDeviceBusy, ErrRefused, ErrTimeout or
// ErrDeviceFailure.
//
// A device has at most MaxDeviceStreams streams open or opening; Dial
// refuses more with ErrDeviceBusy, before anything reaches the device. The
// cap is what keeps streams that nobody reads from stalling the others
// (SessionBuffer).
func (h *Hub) Dial(ctx context.Context, device string, port uint16, client netip.Addr) (net.Conn, error) {
	h.mu.RLock()
	c := h.devices[device]
	h.mu.RUnlock()
	if c == nil {
		h.offline.Add(1)
		return nil, fmt.Errorf("dial device %s: %w", device, ErrDeviceOffline)
	}
	if !slices.Contains(c.info.Load().Ports, port) {
		c.kind.opens[OpenNotAllowed].Add(1)
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, ErrPortNotAllowed)
	}
	// The slot is taken before the open, so concurrent opens cannot pass
	// the cap together.
	if c.streams.Add(1) > MaxDeviceStreams {
		c.streams.Add(-1)
		c.kind.opens[OpenBusy].Add(1)
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, ErrDeviceBusy)
	}
	conn, err := c.tunnel.Open(ctx, port, addrText(client))
	c.kind.opens[openResult(err)].Add(1)
	if err != nil {
		c.streams.Add(-1)
		return nil, fmt.Errorf("dial device %s port %d: %w", device, port, err)
	}
	return &countedConn{Conn: conn, c: c}, nil
}

// Status returns a snapshot of one connected device.
func (h *Hub) Status(device string) (DeviceStatus, bool) {
	h.mu.RLock()
	c := h.devices[device]
	h.mu.RUnlock()
	if c == nil {
		return DeviceStatus{}, false
	}
	return c.status(), true
}

// Tunnel returns the device's current tunnel, if it is connected.
func (h *Hub) Tunnel(device string) (Tunnel, bool) {
	h.mu.RLock()
	c := h.devices[device]
	h.mu.RUnlock()
	if c == nil {
		return nil, false
	}
	return c.tunnel, true
}

// List returns a snapshot of every connected device, sorted by id.
func (h *Hub) List() []DeviceStatus {
	h.mu.RLock()
	out := make([]DeviceStatus, 0, len(h.devices))
	for _, c := range h.devices {
		out = append(out, c.status())
	}
	h.mu.RUnlock()
	slices.SortFunc(out, func(a, b DeviceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Disconnect closes the device's tunnel, if connected.
func (h *Hub) Disconnect(device string) {
	h.mu.RLock()
	c := h.devices[device]
	h.mu.RUnlock()
	if c != nil {
		c.tunnel.Close()
	}
}

// Close closes every tunnel and waits until the endpoint serving each has
// unregistered it, so that nothing a tunnel's endpoint does on its way out
// (the device's last-seen time) comes after Close has returned. Tunnels
// registered after Close are closed at once.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	all := slices.Collect(maps.Values(h.devices))
	h.mu.Unlock()
	for _, c := range all {
		c.tunnel.Close()
	}
	h.registered.Wait()
}

// retire adds the device's byte counts to its kind's totals when it leaves
// the hub; the caller holds the hub's lock, so Metrics counts them once.
func (c *connected) retire() {
	c.kind.retiredIn.Add(c.bytesIn.Load())
	c.kind.retiredOut.Add(c.bytesOut.Load())
}

func (c *connected) status() DeviceStatus {
	info := *c.info.Load()
	info.Ports = slices.Clone(info.Ports)
	info.Properties = maps.Clone(info.Properties)
	return DeviceStatus{
		ID:             c.id,
		ConnectedSince: c.since,
		DeviceInfo:     info,
		OpenStreams:    c.streams.Load(),
		BytesIn:        c.bytesIn.Load(),
		BytesOut:       c.bytesOut.Load(),
	}
}

// countedConn counts a stream's bytes into its device's totals. The counters
// are per device, so streams of different devices never share a cache line.
type countedConn struct {
	net.Conn
	c      *connected
	closed atomic.Bool
}

func (s *countedConn) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	s.c.bytesIn.Add(int64(n))
	return n, err
}

func (s *countedConn) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	s.c.bytesOut.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the stream when the underlying stream can.
func (s *countedConn) CloseWrite() error {
	if cw, ok := s.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return s.Conn.Close()
}

// Close closes the stream and then gives its slot back: only once closed
// does the stream's unread data leave the session's buffer.
func (s *countedConn) Close() error {
	first := s.closed.CompareAndSwap(false, true)
	err := s.Conn.Close()
	if first {
		s.c.streams.Add(-1)
	}
	return err
}
