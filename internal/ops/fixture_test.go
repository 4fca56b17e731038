package ops_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The fixture every test starts from: a real store with
//
//	groups  plant-a, plant-b, empty (no members)
//	users   root (admin), ann (user, plant-a), bob (user, plant-b; a TOTP
//	        enrolment pending), carl (user, no groups)
//	devices gate-1 (plant-a), pump-1 (plant-a, "North Pump"), pump-2
//	        (plant-b), valve-1 (plant-a, "Main Valve"), valve-2 (plant-b)
//	        pump-1 connected to a real hub through a fake tunnel
//	streams two open to pump-1, one of ann's and one of root's
//	tokens  one of ann's, one of bob's
//	key     one enrolment key for plant-a
const (
	rootPassword = "root-password-1"
	annPassword  = "ann-password-1"
	bobPassword  = "bob-password-1"
	carlPassword = "carl-password-1"
)

// adminAddr and userAddr are where the fixture's callers come from.
var (
	adminAddr = netip.MustParseAddr("192.0.2.7")
	userAddr  = netip.MustParseAddr("198.51.100.9")
)

type fixture struct {
	st      *store.Store
	hub     *tunnel.Hub
	svc     *ops.Service
	streams *fakeStreams
	pump1   *fakeTunnel // pump-1's tunnel in hub

	secrets   map[string]string // device id → secret
	annToken  store.Token
	bobToken  store.Token
	enrollKey store.EnrollKey

	accessChanged atomic.Int64 // calls of Config.AccessChanged
}

// fixtureDevices are the fixture's devices in id order.
var fixtureDevices = []store.Device{
	{ID: "gate-1", Groups: []string{"plant-a"}},
	{ID: "pump-1", Name: "North Pump", Groups: []string{"plant-a"}, Ports: []uint16{22, 80}},
	{ID: "pump-2", Groups: []string{"plant-b"}},
	{ID: "valve-1", Name: "Main Valve", Groups: []string{"plant-a"}},
	{ID: "valve-2", Groups: []string{"plant-b"}},
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	f := &fixture{st: st, hub: tunnel.NewHub(nil), streams: &fakeStreams{}, secrets: map[string]string{}}
	t.Cleanup(f.hub.Close)

	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("fixture: %s: %v", what, err)
		}
	}
	for _, g := range []string{"plant-a", "plant-b", "empty"} {
		must("add group "+g, st.AddGroup(store.Group{Name: g}))
	}
	must("add root", st.AddUser("root", rootPassword, store.RoleAdmin, nil))
	must("add ann", st.AddUser("ann", annPassword, store.RoleUser, []string{"plant-a"}))
	must("add bob", st.AddUser("bob", bobPassword, store.RoleUser, []string{"plant-b"}))
	must("add carl", st.AddUser("carl", carlPassword, store.RoleUser, nil))
	_, err = st.BeginTOTP("bob", "")
	must("begin bob's TOTP", err)
	for _, d := range fixtureDevices {
		secret, err := st.AddDevice(d)
		must("add device "+d.ID, err)
		f.secrets[d.ID] = secret
	}
	_, f.annToken, err = st.CreateToken(store.Token{User: "ann", Name: "laptop"})
	must("ann's token", err)
	_, f.bobToken, err = st.CreateToken(store.Token{User: "bob", Name: "laptop"})
	must("bob's token", err)
	_, f.enrollKey, err = st.CreateEnrollKey(store.EnrollKey{Group: "plant-a"})
	must("enrolment key", err)

	f.pump1 = newFakeTunnel()
	reg := f.hub.Register("pump-1", f.pump1, tunnel.DeviceInfo{Kind: tunnel.Subprotocol, Ports: []uint16{22, 80}})
	// The hub's Close waits for the endpoint to unregister; here the test
	// is the endpoint. Cleanups run last first, so this runs before Close.
	t.Cleanup(reg.Unregister)
	f.streams.add(proxy.Stream{ID: "s-ann", User: "ann", Device: "pump-1", Port: 22, Client: userAddr})
	f.streams.add(proxy.Stream{ID: "s-root", User: "root", Device: "pump-1", Port: 80, Client: adminAddr})

	f.svc, err = ops.New(ops.Config{
		Store:         st,
		Hub:           f.hub,
		Streams:       f.streams,
		ReflectorURL:  "https://devices.example.com:8443",
		AccessChanged: func() { f.accessChanged.Add(1) },
	})
	must("ops.New", err)
	return f
}

// caller is the named user as the REST API authenticates them with a
// password, from addr.
func (f *fixture) caller(t *testing.T, name string, addr netip.Addr) ops.Caller {
	t.Helper()
	u, err := f.st.User(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return ops.FromCredential(store.Credential{User: u}, addr)
}

// admin is root from adminAddr; user is ann from userAddr.
func (f *fixture) admin(t *testing.T) ops.Caller { return f.caller(t, "root", adminAddr) }
func (f *fixture) user(t *testing.T) ops.Caller  { return f.caller(t, "ann", userAddr) }

// limited is the caller authenticated with a token of name's limited to
// devices matching pattern.
func (f *fixture) limited(t *testing.T, name, pattern string) ops.Caller {
	t.Helper()
	u, err := f.st.User(name)
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	_, tok, err := f.st.CreateToken(store.Token{User: name, Name: "limited", Devices: pattern})
	if err != nil {
		t.Fatalf("create limited token: %v", err)
	}
	return ops.FromCredential(store.Credential{User: u, TokenID: tok.ID, Devices: pattern}, adminAddr)
}

// events returns every audit event so far.
func (f *fixture) events(t *testing.T) []store.AuditEvent {
	t.Helper()
	es, err := f.st.AuditEvents(store.AuditFilter{})
	if err != nil {
		t.Fatalf("audit events: %v", err)
	}
	return es
}

// fakeTunnel is a connected device's tunnel that opens nothing: ops only
// reads the hub's status and closes tunnels.
type fakeTunnel struct {
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool
}

func newFakeTunnel() *fakeTunnel { return &fakeTunnel{done: make(chan struct{})} }

func (ft *fakeTunnel) Open(context.Context, uint16, string) (net.Conn, error) {
	return nil, tunnel.ErrDeviceOffline
}

func (ft *fakeTunnel) Close() error {
	ft.once.Do(func() { ft.closed.Store(true); close(ft.done) })
	return nil
}

func (ft *fakeTunnel) Done() <-chan struct{} { return ft.done }

// fakeStreams is the proxy's registry of open streams.
type fakeStreams struct {
	mu      sync.Mutex
	streams []proxy.Stream
}

func (fs *fakeStreams) add(st proxy.Stream) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.streams = append(fs.streams, st)
}

func (fs *fakeStreams) Streams(device string) []proxy.Stream {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var out []proxy.Stream
	for _, st := range fs.streams {
		if device == "" || st.Device == device {
			out = append(out, st)
		}
	}
	return out
}

func (fs *fakeStreams) CutStream(device, id string) (proxy.Stream, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	i := slices.IndexFunc(fs.streams, func(st proxy.Stream) bool { return st.Device == device && st.ID == id })
	if i < 0 {
		return proxy.Stream{}, false
	}
	st := fs.streams[i]
	fs.streams = slices.Delete(fs.streams, i, i+1)
	return st, true
}
