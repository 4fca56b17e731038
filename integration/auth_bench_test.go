package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
)

// BenchmarkOpenAuth measures a CONNECT open to first byte on the plain
// listener with each kind of proxy credential, so the cost of the
// credential check shows without a TLS handshake in the way. Every open also
// writes a login (at most once a minute) and a stream audit event.
func BenchmarkOpenAuth(b *testing.B) {
	dev := newBenchDevice(b)
	s := newStack(b)
	s.addUser("bench", "bench-pass", false, "bench")
	secret := s.addDevice(store.Device{ID: "bench", Groups: []string{"bench"}})
	s.startAgent(agent.Config{DeviceID: "bench", Secret: secret, Ports: []uint16{dev.hello}})
	token, _, err := s.srv.Store().CreateToken(store.Token{User: "bench", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	target := fmt.Sprintf("bench.localhost:%d", dev.hello)
	for _, tc := range []struct{ name, auth string }{
		{"password-cached", basic("bench", "bench-pass")},
		{"token-basic", basic("bench", token)},
		{"token-bearer", "Bearer " + token},
	} {
		b.Run(tc.name, func(b *testing.B) {
			one := make([]byte, 1)
			lat := make([]time.Duration, 0, b.N)
			for range b.N {
				start := time.Now()
				c, err := net.Dial("tcp", s.srv.ProxyAddr().String())
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, tc.auth)
				br := bufio.NewReaderSize(c, 64)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("CONNECT: %v %v", resp, err)
				}
				if _, err := io.ReadFull(br, one); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				c.Close()
			}
			reportPercentiles(b, lat)
		})
	}
}
