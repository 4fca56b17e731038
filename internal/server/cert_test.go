package server

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestSelfSignedIsKeptAndCoversDomainAndWildcard(t *testing.T) {
	dir := t.TempDir()
	c1, err := SelfSignedCertificate(dir, "devices.example.com")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := SelfSignedCertificate(dir, "devices.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if CertificateFingerprint(c1) != CertificateFingerprint(c2) {
		t.Fatal("certificate made anew on second start")
	}
	leaf, _ := x509.ParseCertificate(c1.Certificate[0])
	for _, h := range []string{"devices.example.com", "pump-17.devices.example.com"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(CertificateFingerprint(c1)) {
		t.Fatalf("fingerprint %q", CertificateFingerprint(c1))
	}
	c3, err := SelfSignedCertificate(dir, "other.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if CertificateFingerprint(c3) == CertificateFingerprint(c1) {
		t.Fatal("kept a certificate for the old domain")
	}
}

func TestServerConfigOffersOnlyHTTP1(t *testing.T) {
	c, err := SelfSignedCertificate(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg := serverTLSConfig(c)
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" || cfg.MinVersion < tls.VersionTLS12 {
		t.Fatalf("%+v", cfg.NextProtos)
	}
}
