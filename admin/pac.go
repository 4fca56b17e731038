package admin

import (
	"fmt"
	"net/http"
)

// servePAC serves the proxy auto-configuration file: device subdomains go
// through the reflector as an HTTPS proxy, everything else directly. The
// host is lower-cased and stripped of a final dot first, as browsers may
// pass "PUMP-17.Example.com." through; dnsDomainIs compares case-sensitively.
// The domain and port were checked in New, so they are safe inside the
// script's string literals.
func (a *Admin) servePAC(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/x-ns-proxy-autoconfig")
	h.Set("Cache-Control", "max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	fmt.Fprintf(w, `// Reflector: reach the devices under %[1]s through the reflector.
function FindProxyForURL(url, host) {
	host = host.toLowerCase();
	if (host.charAt(host.length - 1) == ".") host = host.substring(0, host.length - 1);
	if (dnsDomainIs(host, ".%[1]s")) return "HTTPS %[1]s:%[2]s";
	return "DIRECT";
}
`, a.cfg.Domain, a.publicPort())
}
