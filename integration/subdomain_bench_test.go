package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// Device-subdomain browsing against the same device web server directly, in
// the same run (see bench_test.go). Run:
//
//	go test ./integration -run '^$' -bench Subdomain -benchtime 2s -count 3

// subBenchPath is one way to reach the device's web server: a client and
// the URL of a path on it.
type subBenchPath struct {
	name   string
	client *http.Client
	url    func(path string) string
	token  string // X-Reflector-Authorization bearer, "" for none
}

func subBenchPaths(b *testing.B) []subBenchPath {
	zeros := make([]byte, 64<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/endless", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for {
			if _, err := w.Write(zeros); err != nil {
				return
			}
		}
	})
	web := webServer(b, mux)
	s := newStack(b)
	s.addUser("bench", "bench-pass", true)
	tok, _, err := s.srv.Store().CreateToken(store.Token{User: "bench", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	secret := s.addDevice(store.Device{ID: "bench"})
	s.startAgent(agent.Config{DeviceID: "bench", Secret: secret, Ports: []uint16{web}, HTTPPort: web})
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(direct.CloseIdleConnections)
	sub := subClient(s.srv.Addr().String(), s.pool)
	b.Cleanup(sub.CloseIdleConnections)
	return []subBenchPath{
		{"direct", direct, func(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", web, p) }, ""},
		{"subdomain", sub, func(p string) string { return subURL(s.srv.Addr(), "bench", p) }, tok},
	}
}

func (p subBenchPath) get(b *testing.B, path string) *http.Response {
	req, err := http.NewRequest(http.MethodGet, p.url(path), nil)
	if err != nil {
		b.Fatal(err)
	}
	if p.token != "" {
		req.Header.Set(subHeaderAuth, "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return resp
}

// BenchmarkSubdomainDownload is one response body read as fast as the
// client can, 1 MiB per op.
func BenchmarkSubdomainDownload(b *testing.B) {
	for _, p := range subBenchPaths(b) {
		b.Run(p.name, func(b *testing.B) {
			resp := p.get(b, "/endless")
			defer resp.Body.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(chunk)
			b.ResetTimer()
			for range b.N {
				for n := 0; n < chunk; {
					m, err := resp.Body.Read(buf[:min(len(buf), chunk-n)])
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
		})
	}
}

// BenchmarkSubdomainSmallRequest is a GET of a 5-byte page on a kept-alive
// connection, request sent to body read.
func BenchmarkSubdomainSmallRequest(b *testing.B) {
	for _, p := range subBenchPaths(b) {
		b.Run(p.name, func(b *testing.B) {
			io.Copy(io.Discard, p.get(b, "/hello").Body) // connection and stream opened, pooled
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				resp := p.get(b, "/hello")
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
	}
}
