package proxy

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/reflector-dev/reflector/tunnel"
)

// testFront stands where the server's router stands in front of the proxy
// (internal/server/router.go, whose table test covers the dispatch itself):
// it gives every request the client address testClient and hands the
// proxy's request forms to the proxy's handlers. Anything else is counted
// in next and answered "next".
type testFront struct {
	p    *Proxy
	next *atomic.Int64
}

func (f *testFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = tunnel.WithClientAddr(r, testClient)
	device, onDevice := f.p.DeviceHost(r.Host)
	switch {
	case r.Method == http.MethodConnect:
		f.p.ServeConnect(w, r)
	case r.URL.IsAbs():
		f.p.ServeAbsolute(w, r)
	case onDevice && IsClientToolUpgrade(r):
		f.p.ServeClientTool(w, r, device)
	case onDevice && IsWebsockify(r):
		f.p.ServeWebsockify(w, r, device)
	case onDevice:
		f.p.ServeDevice(w, r, device)
	default:
		f.next.Add(1)
		io.WriteString(w, "next")
	}
}
