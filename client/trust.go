package client

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Fingerprint is the pin of a certificate given in DER: "sha256:" and the
// lower-case hex of its SHA-256, the form `reflector serve` prints.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ParseFingerprint reads "sha256:<64 hex>" (colons between the hex pairs,
// as openssl prints them, and upper case are accepted) and returns it in
// Fingerprint's form.
func ParseFingerprint(s string) (string, error) {
	hexPart, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	if !ok {
		return "", fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", s)
	}
	pin, err := hex.DecodeString(strings.ReplaceAll(hexPart, ":", ""))
	if err != nil || len(pin) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q: want sha256:<64 hex digits>", s)
	}
	return "sha256:" + hex.EncodeToString(pin), nil
}

// KnownReflectors is a file of the reflectors' certificates trusted on
// first use, as ssh's known_hosts: one "host:port sha256:<hex>" a line.
type KnownReflectors struct {
	Path string
}

// Lookup returns the fingerprint kept for addr ("" when none).
func (k KnownReflectors) Lookup(addr string) (string, error) {
	f, err := os.Open(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read known reflectors: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[0] == addr {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read known reflectors %s: %w", k.Path, err)
	}
	return "", nil
}

// Add keeps fingerprint for addr, replacing a line for addr. The file is
// made 0600 in a 0700 directory.
func (k KnownReflectors) Add(addr, fingerprint string) error {
	old, err := os.ReadFile(k.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read known reflectors: %w", err)
	}
	var b strings.Builder
	for line := range strings.Lines(string(old)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == addr {
			continue
		}
		b.WriteString(strings.TrimRight(line, "\n") + "\n")
	}
	fmt.Fprintf(&b, "%s %s\n", addr, fingerprint)
	return writePrivate(k.Path, []byte(b.String()))
}

// writePrivate replaces path with data, readable by its owner only: a new
// file beside it, renamed over it.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file 0600 (on Windows the mode bits mean
	// nothing and the user's profile directory is what keeps it private).
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Trust says which certificates of the reflector the client accepts.
type Trust struct {
	// CAFile, when set, is a PEM file of the only authorities accepted.
	CAFile string
	// Fingerprint, when set, is the only certificate accepted
	// ("sha256:<hex>").
	Fingerprint string
	// Known is the file of certificates trusted on first use; consulted
	// when neither CAFile nor Fingerprint is set and the system's roots
	// do not vouch for the certificate. Path "" means none.
	Known KnownReflectors
}

// tlsConfig is the TLS configuration for the reflector at addr
// ("host:port"). VerifyConnection accepts, in this order: a certificate
// of CAFile's authorities (and only those, when it is set); the pinned
// Fingerprint (and only it, when set); the one the known-reflectors file
// keeps for addr; one the system's roots vouch for. A certificate none of
// them accepts fails the handshake with a *FingerprintError.
func (t Trust) tlsConfig(addr string) (*tls.Config, error) {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	var pool *x509.CertPool
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate found", t.CAFile)
		}
	}
	pin := ""
	if t.Fingerprint != "" {
		p, err := ParseFingerprint(t.Fingerprint)
		if err != nil {
			return nil, err
		}
		pin = p
	}
	cfg := &tls.Config{
		ServerName: host,
		// Offered so that a reflector behind a load balancer picks
		// HTTP/1.1 (CONNECT and the API both speak it).
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
		// Verification is VerifyConnection's, below: the standard
		// check would refuse a self-signed reflector before the pin
		// could be compared.
		InsecureSkipVerify: true,
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the reflector sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		got := Fingerprint(leaf.Raw)
		verify := func(roots *x509.CertPool) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
			return err
		}
		switch {
		case pool != nil:
			if err := verify(pool); err != nil {
				return fmt.Errorf("the certificate of %s is not signed by the CA file %s: %w", addr, t.CAFile, err)
			}
			return nil
		case pin != "":
			if got != pin {
				return &FingerprintError{Addr: addr, Known: pin, Got: got, Store: "--fingerprint"}
			}
			return nil
		}
		// The known file first: it is one small read, where the
		// system's roots are a hundred certificates to parse (measured:
		// most of a connect's own time on a laptop-sized machine).
		known := ""
		if t.Known.Path != "" {
			var err error
			if known, err = t.Known.Lookup(addr); err != nil {
				return err
			}
			if known == got {
				return nil
			}
		}
		// A reflector that moved from a self-signed certificate to one a
		// public authority vouches for is not an attack.
		if verify(nil) == nil {
			return nil
		}
		return &FingerprintError{Addr: addr, Known: known, Got: got, Store: t.Known.Path}
	}
	return cfg, nil
}
