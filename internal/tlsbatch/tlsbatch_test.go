package tlsbatch

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func serverConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tlsbatch.test"},
		DNSNames:     []string{"tlsbatch.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// pair returns a TLS client over a counting tlsbatch.Conn and the server
// end, accepted through Listener, over real TCP on loopback.
func pair(t *testing.T) (client *tls.Conn, counter *countingConn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{Listener: ln, Config: serverConfig(t)}.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	counter = &countingConn{Conn: raw}
	client = tls.Client(New(counter), &tls.Config{ServerName: "tlsbatch.test", InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	t.Cleanup(func() { client.Close() })
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close() })
	if Of(server) == nil {
		t.Fatal("Listener's connection is not a *tls.Conn over a Conn")
	}
	return client, counter, server
}

// readAll reads n bytes from c in the background and returns their hash.
func readAll(c net.Conn, n int) <-chan [32]byte {
	sum := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.CopyN(h, c, int64(n))
		var s [32]byte
		copy(s[:], h.Sum(nil))
		sum <- s
	}()
	return sum
}

func TestBatchedWriteIsOneSocketWrite(t *testing.T) {
	client, counter, server := pair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB: five TLS records
	got := readAll(server, len(data))

	before := counter.writes.Load()
	if n, err := Writer(client).Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if w := counter.writes.Load() - before; w != 1 {
		t.Errorf("a 64 KiB write made %d socket writes, want 1", w)
	}
	if <-got != sha256.Sum256(data) {
		t.Error("the server read other bytes than were written")
	}
}

func TestUnbatchedWritesPassThrough(t *testing.T) {
	client, counter, server := pair(t)
	data := bytes.Repeat([]byte{7}, 64<<10)
	got := readAll(server, len(data))

	before := counter.writes.Load()
	if _, err := client.Write(data); err != nil {
		t.Fatal(err)
	}
	if w := counter.writes.Load() - before; w < 4 {
		t.Errorf("a 64 KiB write outside a batch made %d socket writes, want one a record", w)
	}
	if <-got != sha256.Sum256(data) {
		t.Error("the server read other bytes than were written")
	}
}

func TestWriteLargerThanABatchArrivesWhole(t *testing.T) {
	client, counter, server := pair(t)
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	got := readAll(server, len(data))

	before := counter.writes.Load()
	if n, err := Writer(client).Write(data); n != len(data) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	// 65 records; a batch holds about four of them.
	if w := counter.writes.Load() - before; w > 20 {
		t.Errorf("a 1 MiB write made %d socket writes", w)
	}
	if <-got != sha256.Sum256(data) {
		t.Error("the server read other bytes than were written")
	}
}

// Concurrent writers (crypto/tls serialises their records) and a
// CloseWrite must reach the peer in the order TLS sealed them, or the
// peer cannot decrypt them at all.
func TestConcurrentBatchesKeepRecordOrder(t *testing.T) {
	client, _, server := pair(t)
	const writers, writes, size = 4, 50, 20000
	var wg sync.WaitGroup
	w := Writer(client)
	for i := range writers {
		wg.Go(func() {
			chunk := bytes.Repeat([]byte{byte('a' + i)}, size)
			for range writes {
				if _, err := w.Write(chunk); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(server)
		if err != nil {
			t.Errorf("server read: %v", err)
		}
		done <- b
	}()
	wg.Wait()
	if err := w.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if len(got) != writers*writes*size {
		t.Fatalf("server read %d bytes, want %d", len(got), writers*writes*size)
	}
	// Each Write is contiguous: crypto/tls holds its lock for a whole Write.
	for off := 0; off < len(got); off += size {
		if !bytes.Equal(got[off:off+size], bytes.Repeat(got[off:off+1], size)) {
			t.Fatalf("chunk at %d is mixed", off)
		}
	}
}

func TestFailedSocketWriteIsReported(t *testing.T) {
	client, counter, _ := pair(t)
	counter.Conn.Close()
	if _, err := Writer(client).Write(make([]byte, 40000)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write on a closed socket = %v, want net.ErrClosed", err)
	}
	if _, err := Writer(client).Write([]byte("x")); err == nil {
		t.Fatal("a later Write succeeded")
	}
}

func TestWriterLeavesOtherConnectionsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Writer(a) != a {
		t.Error("Writer wrapped a connection that is not TLS over a Conn")
	}
	if Of(a) != nil {
		t.Error("Of found a Conn under a pipe")
	}
}

func TestReaderGathersHeldRecords(t *testing.T) {
	client, _, server := pair(t)
	data := make([]byte, 64<<10) // four full records, sent in one socket write
	rand.Read(data)
	if _, err := Writer(client).Write(data); err != nil {
		t.Fatal(err)
	}
	r := Reader(server)
	if r == server {
		t.Skip("no reads that do not wait on this platform")
	}
	buf := make([]byte, 128<<10)
	got, reads := 0, 0
	for got < len(data) {
		n, err := r.Read(buf[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += n
		reads++
	}
	// The records are in the socket when the first read starts (one socket
	// write on loopback), so one read takes them all (seen every time; two
	// allowed in case the kernel delivers the write in two parts).
	if reads > 2 {
		t.Errorf("four records sent at once took %d reads, want 1 (crypto/tls alone takes 4)", reads)
	}
	if !bytes.Equal(buf[:got], data) {
		t.Error("read other bytes than were written")
	}
}

func TestReaderDoesNotWaitForMore(t *testing.T) {
	client, _, server := pair(t)
	r := Reader(server)
	buf := make([]byte, 64<<10)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	// The deadline it used is gone: the next Read waits for data.
	go func() {
		time.Sleep(100 * time.Millisecond)
		client.Write([]byte("world"))
		client.CloseWrite()
	}()
	n, err = r.Read(buf)
	if (err != nil && err != io.EOF) || string(buf[:n]) != "world" {
		t.Fatalf("second Read = %q, %v", buf[:n], err)
	}
	// The close arrives with the data (n, io.EOF) or on its own.
	if err == nil {
		if n, err = r.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read after CloseWrite = %d, %v; want 0, EOF", n, err)
		}
	}
}

func TestReaderLeavesOtherConnectionsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Reader(a) != a {
		t.Error("Reader wrapped a connection that is not TLS")
	}
}

func TestCloseDoesNotWaitForAPeerThatStoppedReading(t *testing.T) {
	client, _, _ := pair(t) // the server never reads
	written := make(chan error, 1)
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := Writer(client).Write(chunk); err != nil {
				written <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the socket buffers fill; a batch is stuck

	start := time.Now()
	Close(client)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	select {
	case err := <-written:
		if err == nil {
			t.Error("the stuck Write reported no error")
		}
	case <-time.After(time.Second):
		t.Fatal("the stuck Write did not end after Close")
	}
}

func TestContextCarriesTheConnOfATLSConnection(t *testing.T) {
	_, _, server := pair(t)
	ctx := ContextWithConn(context.Background(), server)
	if b := FromContext(ctx); b == nil || b != Of(server) {
		t.Fatalf("FromContext = %v, want the Conn under the server's *tls.Conn", b)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := FromContext(ContextWithConn(context.Background(), a)); c != nil {
		t.Fatalf("a pipe's context carries %v", c)
	}
}

func TestANilConnBatchesNothing(t *testing.T) {
	var b *Conn
	b.Hold()
	if err := b.Send(); err != nil {
		t.Fatalf("Send on a nil Conn = %v", err)
	}
}
