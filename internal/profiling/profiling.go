// Package profiling serves Go's runtime profiles (net/http/pprof) on a
// loopback address for `reflector serve --pprof-listen` and
// `reflector-agent --pprof-listen`, so that the request and open paths can
// be profiled on the real processes users run (docs/performance.md). It is
// off unless asked for, and it refuses any address but loopback: a profile
// is no secret, but an endpoint that makes a process spend its CPU on
// profiling must not be reachable from a network.
package profiling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"
)

// Listen checks addr (host:port, the host a loopback IP or "localhost")
// and listens on it.
func Listen(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listener %q: %w", addr, err)
	}
	if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
		return nil, fmt.Errorf("pprof listener %q: a loopback address is required, e.g. 127.0.0.1:6060", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listener: %w", err)
	}
	return l, nil
}

// Serve serves the profiles on l under /debug/pprof/ until ctx ends.
func Serve(ctx context.Context, l net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("profiles on http://" + l.Addr().String() + "/debug/pprof/")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("pprof listener stopped", "err", err)
	}
}
