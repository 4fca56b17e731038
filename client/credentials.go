package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Login is what the client keeps for one reflector: its URL, the user and
// the API token used as the proxy password and the API bearer.
type Login struct {
	URL   string `json:"url"`
	User  string `json:"user"`
	Token string `json:"token"`
	// TokenID is the token's id, which logout revokes ("" when the token
	// came from the environment).
	TokenID string `json:"tokenId,omitempty"`
}

// Credentials is the credentials file: the logins by reflector URL and the
// one used when no reflector is named (the last logged in).
type Credentials struct {
	Current string           `json:"current,omitempty"`
	Logins  map[string]Login `json:"logins"`
}

// ConfigDir is the directory of the credentials and known-reflectors
// files: $XDG_CONFIG_HOME/reflector on Linux (~/.config/reflector without
// it), ~/Library/Application Support/reflector on macOS,
// %AppData%\reflector on Windows.
func ConfigDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory: %w", err)
	}
	return filepath.Join(dir, "reflector"), nil
}

// LoadCredentials reads the credentials file at path; a missing file is an
// empty one.
func LoadCredentials(path string) (*Credentials, error) {
	c := &Credentials{Logins: map[string]Login{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w", path, err)
	}
	if c.Logins == nil {
		c.Logins = map[string]Login{}
	}
	return c, nil
}

// Save writes the credentials file at path, mode 0600.
func (c *Credentials) Save(path string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	return writePrivate(path, append(b, '\n'))
}

// Find returns the login for the reflector at rawURL, or the current one
// when rawURL is "".
func (c *Credentials) Find(rawURL string) (Login, bool) {
	if rawURL == "" {
		rawURL = c.Current
	}
	u, err := NormalizeURL(rawURL)
	if err != nil {
		return Login{}, false
	}
	l, ok := c.Logins[u]
	return l, ok
}

// NormalizeURL returns a reflector's URL as https://host:port: a missing
// scheme is https, a missing port 443; a path is dropped. http:// is
// refused, since the token would cross the network in the clear.
func NormalizeURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("no reflector URL: pass -R https://reflector.example.com:8443 or set REMOTE_URL")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("reflector URL %q: want https://host[:port]", raw)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("reflector URL %q: want https:// (the reflector's TLS listener)", raw)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return "https://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}
