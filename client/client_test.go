package client

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestParsePortMap(t *testing.T) {
	for in, want := range map[string]PortMap{"8022:22": {8022, 22}, "22": {22, 22}, "0:5900": {0, 5900}} {
		if got, err := ParsePortMap(in); err != nil || got != want {
			t.Errorf("ParsePortMap(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a:22", "22:0", "70000:22", "1:2:3", "-1:22"} {
		if _, err := ParsePortMap(bad); err == nil {
			t.Errorf("ParsePortMap(%q) accepted", bad)
		}
	}
}

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://R.example.com:8443/":   "https://r.example.com:8443",
		"reflector.example.com":         "https://reflector.example.com:443",
		"https://[::1]:8443/api":        "https://[::1]:8443",
		" https://localhost:8443 ":      "https://localhost:8443",
		"https://reflector.example.com": "https://reflector.example.com:443",
	} {
		if got, err := NormalizeURL(in); err != nil || got != want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://reflector:8080", "https://"} {
		if _, err := NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) accepted", bad)
		}
	}
}

func TestDeviceID(t *testing.T) {
	for in, want := range map[string]string{"pump-17": "pump-17", "pi@pump-17": "pump-17",
		"Pump-17.devices.example.com": "pump-17", "pi@pump-17.localhost": "pump-17"} {
		if got := DeviceID(in); got != want {
			t.Errorf("DeviceID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseFingerprint(t *testing.T) {
	const want = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	for _, in := range []string{want, "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"} {
		if got, err := ParseFingerprint(in); err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "00112233", "sha1:0011", "sha256:zz"} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", bad)
		}
	}
}

func TestProxyCommandQuotesThePath(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("ssh for Windows runs the command without a shell: double quotes")
	}
	for exe, want := range map[string]string{
		"/usr/local/bin/remote": "/usr/local/bin/remote connect %h 22",
		"/home/a b/remote":      "'/home/a b/remote' connect %h 22",
		"/home/it's/remote":     `'/home/it'\''s/remote' connect %h 22`,
		"/opt/100%/remote":      "'/opt/100%%/remote' connect %h 22",
	} {
		if got := ProxyCommand(exe, 22); got != want {
			t.Errorf("ProxyCommand(%q) = %q, want %q", exe, got, want)
		}
	}
	if got := ProxyCommand("/r", 0); got != "/r connect %h %p" {
		t.Errorf("ProxyCommand without a port = %q, want ssh's %%p", got)
	}
}

func TestKnownReflectorsReplaceTheLineOfAnAddress(t *testing.T) {
	k := KnownReflectors{Path: filepath.Join(t.TempDir(), "sub", "known_reflectors")}
	if fp, err := k.Lookup("a:1"); err != nil || fp != "" {
		t.Fatalf("empty file: %q %v", fp, err)
	}
	k.Add("a:1", "sha256:01")
	k.Add("b:2", "sha256:02")
	k.Add("a:1", "sha256:03")
	for addr, want := range map[string]string{"a:1": "sha256:03", "b:2": "sha256:02", "c:3": ""} {
		if fp, err := k.Lookup(addr); err != nil || fp != want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", addr, fp, err, want)
		}
	}
	b, _ := os.ReadFile(k.Path)
	if string(b) != "b:2 sha256:02\na:1 sha256:03\n" {
		t.Errorf("file:\n%s", b)
	}
}

func TestCredentialsFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reflector", "credentials")
	c := &Credentials{Current: "https://r:8443", Logins: map[string]Login{"https://r:8443": {URL: "https://r:8443", User: "alice", Token: "rfl_x"}}}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	got, err := LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := got.Find(""); !ok || l.Token != "rfl_x" {
		t.Errorf("Find(\"\") = %+v, %v", l, ok)
	}
	if l, ok := got.Find("r:8443"); !ok || l.User != "alice" {
		t.Errorf("Find(r:8443) = %+v, %v", l, ok)
	}
}

func TestStatusErrorUnwrapsToItsCause(t *testing.T) {
	for status, want := range map[int]error{407: ErrBadCredentials, 401: ErrBadCredentials, 403: ErrNoAccess,
		404: ErrUnknownDevice, 502: ErrDeviceUnavailable, 504: ErrDeviceTimeout, 429: ErrBusy, 503: ErrBusy} {
		if err := error(&StatusError{Status: status}); !errors.Is(err, want) {
			t.Errorf("%d: %v is not %v", status, err, want)
		}
	}
	if !Temporary(&StatusError{Status: 502, Reason: "dial device pump-17: device offline"}) ||
		Temporary(&StatusError{Status: 502, Reason: "connection refused by device"}) ||
		Temporary(&StatusError{Status: 403, Reason: "port not allowed"}) {
		t.Error("Temporary: only an offline device, a busy reflector or an unreachable one pass by themselves")
	}
}
