package agent

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/enroll"
)

// Defaults for Config fields left zero; Validate fills them in.
const (
	DefaultLocalAddr      = "127.0.0.1"
	DefaultConnectTimeout = 10 * time.Second
	DefaultLocalTimeout   = 10 * time.Second
)

// SecretEnv names the environment variable that supplies the device secret
// when the properties file sets none (webtunnel.password is empty in the
// stock file), so the secret need not sit in a file.
const SecretEnv = "REFLECTOR_DEVICE_SECRET"

// EnrollKeyEnv names the environment variable that supplies the enrolment
// key when no flag does, for the same reason as SecretEnv.
const EnrollKeyEnv = "REFLECTOR_ENROLL_KEY"

// ErrInvalidConfig wraps every error of Validate, and of LoadProperties about
// the file's content (not about opening it).
var ErrInvalidConfig = errors.New("invalid agent configuration")

// Config is what the agent needs to connect. Each field names the key of
// WebTunnelAgent.properties it is read from. Zero values mean the default
// where one is documented; Validate fills those in.
type Config struct {
	// ReflectorURL is the reflector's base URL, e.g.
	// https://reflector.example.com:8443 (webtunnel.reflectorURI). The
	// connect loop appends the tunnel path. Scheme https, wss, http or ws.
	ReflectorURL string
	// DeviceID is the device's name at the reflector, a lower-case DNS
	// label (webtunnel.deviceId).
	DeviceID string
	// DeviceName and DeviceVersion are free text shown by the reflector
	// (webtunnel.deviceName, webtunnel.deviceVersion).
	DeviceName    string
	DeviceVersion string
	// Secret is the device's password (webtunnel.password, else
	// $REFLECTOR_DEVICE_SECRET). When it is empty, the secret comes from
	// StateFile, or, the first time, from enrolling with EnrollKey.
	Secret string
	// EnrollKey is an enrolment key ("rfe_…", a flag or
	// $REFLECTOR_ENROLL_KEY; no WebTunnelAgent key). When Secret is empty
	// and StateFile holds no secret yet, the agent enrols with it, receives
	// its own secret and keeps it in StateFile. Once StateFile holds a
	// secret the key is not used. It excludes Secret.
	EnrollKey string
	// StateFile keeps the secret an enrolment obtained, as JSON, mode 0600
	// (see State). It is read when Secret is empty, and required with
	// EnrollKey.
	StateFile string
	// Ports is the allow-list of local ports (webtunnel.ports: "80, 22";
	// POCO also splits on ';').
	Ports []uint16
	// LocalAddr is the host whose ports are forwarded (webtunnel.host);
	// default DefaultLocalAddr. WebTunnelAgent's default is "localhost",
	// which may resolve to ::1 where the device listens on 127.0.0.1 only.
	LocalAddr string
	// HTTPPort is the port of the device's web interface, 0 if none
	// (webtunnel.httpPort); HTTPSEnable says it speaks TLS
	// (webtunnel.https.enable).
	HTTPPort    uint16
	HTTPSEnable bool
	// Ports of other services the reflector offers links for, 0 if none
	// (webtunnel.sshPort, vncPort, rdpPort, appPort).
	SSHPort, VNCPort, RDPPort, AppPort uint16
	// ConnectTimeout bounds connecting to the reflector: dial, TLS and
	// WebSocket upgrade (http.timeout, seconds); default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// LocalTimeout bounds dialing a local port (webtunnel.connectTimeout,
	// seconds, which WebTunnelAgent uses for exactly that); default
	// DefaultLocalTimeout.
	LocalTimeout time.Duration
	// LocalIdleTimeout closes a forwarded connection idle that long in both
	// directions (webtunnel.localTimeout, seconds; WebTunnelAgent's default
	// is 7200). Zero means never.
	LocalIdleTimeout time.Duration
	// Proxy is the HTTP proxy to CONNECT through (http.proxy.*), nil when
	// disabled; the connect loop then follows HTTPS_PROXY as
	// http.ProxyFromEnvironment does.
	Proxy *ProxyConfig
	// CAFile holds the CA certificates to trust instead of the system's
	// (tls.caLocation); it may name a directory, left to the TLS code.
	CAFile string
	// Fingerprint pins the reflector's certificate, "sha256:" and 64 hex
	// digits (a flag; no WebTunnelAgent key). Validate lower-cases it and
	// accepts colons between the bytes, as openssl prints them.
	Fingerprint string
	// Insecure accepts any reflector certificate
	// (tls.acceptUnknownCertificate = true, or tls.verification = none).
	Insecure bool
}

// ProxyConfig is an HTTP proxy the agent tunnels through with CONNECT.
type ProxyConfig struct {
	Host               string
	Port               uint16
	Username, Password string // Basic proxy credentials; none when Username is empty
}

// LogValue keeps the secrets out of logs.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("reflector", c.ReflectorURL),
		slog.String("device", c.DeviceID),
		slog.Any("ports", c.Ports),
		slog.String("local", c.LocalAddr),
	}
	if c.Secret == "" && c.StateFile != "" {
		attrs = append(attrs, slog.String("state_file", c.StateFile))
	}
	if c.Proxy != nil {
		attrs = append(attrs, slog.String("proxy", net.JoinHostPort(c.Proxy.Host, strconv.Itoa(int(c.Proxy.Port)))))
	}
	return slog.GroupValue(attrs...)
}

// Properties returns the device facts the agent declares to the reflector,
// keyed by the well-known names of tunnel.PropertyNames; unset ones are
// left out. httpsEnable qualifies httpPort, so it is sent with it, or alone
// when true.
func (c Config) Properties() map[string]string {
	m := make(map[string]string)
	if c.DeviceName != "" {
		m["deviceName"] = c.DeviceName
	}
	if c.DeviceVersion != "" {
		m["deviceVersion"] = c.DeviceVersion
	}
	for _, p := range []struct {
		name string
		port uint16
	}{{"httpPort", c.HTTPPort}, {"sshPort", c.SSHPort}, {"vncPort", c.VNCPort}, {"rdpPort", c.RDPPort}, {"appPort", c.AppPort}} {
		if p.port != 0 {
			m[p.name] = strconv.Itoa(int(p.port))
		}
	}
	if c.HTTPPort != 0 || c.HTTPSEnable {
		m["httpsEnable"] = strconv.FormatBool(c.HTTPSEnable)
	}
	// A device beside the agent (a PLC on the LAN) redirects to its own
	// address; the reflector rewrites such redirects to the subdomain.
	if h := c.LocalAddr; h != "" && !loopbackHost(h) {
		m["targetHost"] = h
	}
	return m
}

// loopbackHost reports whether h is this machine: "localhost" or a
// loopback address.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// Validate checks c and fills in the defaults of zero fields, so that after
// a nil error every field can be used as it is. It also trims trailing
// slashes from ReflectorURL and normalises Fingerprint. It reports every
// problem at once, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.LocalAddr == "" {
		c.LocalAddr = DefaultLocalAddr
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.LocalTimeout == 0 {
		c.LocalTimeout = DefaultLocalTimeout
	}

	if u, err := url.Parse(c.ReflectorURL); c.ReflectorURL == "" {
		bad("reflector URL is not set (webtunnel.reflectorURI)")
	} else if err != nil {
		bad("reflector URL: %v", err)
	} else if s := u.Scheme; s != "https" && s != "wss" && s != "http" && s != "ws" {
		bad("reflector URL %q: scheme must be https, wss, http or ws", c.ReflectorURL)
	} else if u.User != nil {
		bad("reflector URL must not carry credentials") // so it is not quoted here
	} else if u.Hostname() == "" {
		bad("reflector URL %q has no host", c.ReflectorURL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		bad("reflector URL %q: a base URL has no query or fragment", c.ReflectorURL)
	} else {
		c.ReflectorURL = strings.TrimRight(c.ReflectorURL, "/")
	}

	switch id := c.DeviceID; {
	case id == "":
		bad("device id is not set (webtunnel.deviceId)")
	case tunnel.ValidDeviceID(id):
	case strings.Contains(id, "${"):
		bad("device id %q has an unresolved ${…} reference: is the environment variable set?", id)
	case tunnel.ValidDeviceID(strings.ToLower(id)):
		bad("device id %q has upper-case letters: a device id is a lower-case DNS label, such as %q", id, strings.ToLower(id))
	default:
		bad("device id %q is not a DNS label: 1 to 63 of a-z, 0-9 and '-', not beginning or ending with '-'", id)
	}

	switch {
	case c.Secret != "" && c.EnrollKey != "":
		// Which one should win is a guess either way; the key is meant for
		// a first start without a secret.
		bad("both a device secret and an enrolment key are given: give the key alone on a device without a secret, or the secret alone")
	case c.EnrollKey != "" && c.StateFile == "":
		bad("enrolment needs a state file to keep the device's secret in")
	case c.EnrollKey != "" && !strings.HasPrefix(c.EnrollKey, enroll.KeyPrefix):
		// Not quoted: it may be a secret pasted in the wrong place.
		bad("enrolment key does not start with %q: is it a device secret?", enroll.KeyPrefix)
	case c.Secret == "" && c.EnrollKey == "" && c.StateFile == "":
		bad("device secret is not set (webtunnel.password, or $%s), nor an enrolment key ($%s)", SecretEnv, EnrollKeyEnv)
	}

	if len(c.Ports) == 0 {
		bad("no ports to forward (webtunnel.ports)")
	}
	if slices.Contains(c.Ports, 0) {
		bad("port 0 cannot be forwarded (webtunnel.ports)")
	}
	// WebTunnelAgent only warns here; but the reflector sends browsers to the
	// HTTP port, so a device whose HTTP port is not forwarded answers every
	// browser with 403.
	if c.HTTPPort != 0 && !slices.Contains(c.Ports, c.HTTPPort) {
		bad("HTTP port %d (webtunnel.httpPort) is not among the forwarded ports %s (webtunnel.ports)", c.HTTPPort, tunnel.FormatPorts(c.Ports))
	}

	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"connect timeout", c.ConnectTimeout}, {"local timeout", c.LocalTimeout}, {"local idle timeout", c.LocalIdleTimeout}} {
		if d.d < 0 {
			bad("%s %v is negative", d.name, d.d)
		}
	}

	if p := c.Proxy; p != nil {
		if p.Host == "" {
			bad("proxy host is not set (http.proxy.host)")
		}
		if p.Port == 0 {
			bad("proxy port is not set (http.proxy.port)")
		}
	}

	if c.Fingerprint != "" {
		if fp, ok := normalizeFingerprint(c.Fingerprint); ok {
			c.Fingerprint = fp
		} else {
			bad("fingerprint %q: want \"sha256:\" and 64 hex digits", c.Fingerprint)
		}
	}

	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// normalizeFingerprint turns "SHA256:AB:CD:…" or "sha256:abcd…" into
// "sha256:abcd…".
func normalizeFingerprint(s string) (string, bool) {
	h, ok := strings.CutPrefix(strings.ToLower(s), "sha256:")
	if !ok {
		return "", false
	}
	h = strings.ReplaceAll(h, ":", "")
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return "", false
	}
	return "sha256:" + h, true
}

// LoadProperties reads a macchina.io REMOTE WebTunnelAgent.properties file
// into a Config, resolving ${system.env.NAME} and the like from the real
// environment. It does not call Validate: flags may still change the result.
// Keys it does not use are logged in one line, except those every such file
// carries and that our agent does without (see ignoredKeys).
//
// Two keys mean what WebTunnelAgent makes them mean, which is not what their
// names suggest: webtunnel.connectTimeout bounds the local dial
// (LocalTimeout), and webtunnel.localTimeout is the idle timeout of local
// connections (LocalIdleTimeout). The timeout for the reflector is
// http.timeout (ConnectTimeout).
func LoadProperties(path string, logger *slog.Logger) (Config, error) {
	return loadProperties(path, logger, sysLookup{})
}

func loadProperties(path string, logger *slog.Logger, sys sysLookup) (Config, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if sys.env == nil {
		sys.env = os.LookupEnv
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	defer f.Close()
	props, err := parseProperties(f, sys)
	var pe *PropertyError
	switch {
	case errors.As(err, &pe):
		pe.File = path
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, pe)
	case err != nil:
		return Config{}, fmt.Errorf("agent config: read %s: %w", path, err)
	}

	r := &propReader{p: props, file: path}
	c := Config{
		ReflectorURL:     r.str("webtunnel.reflectorURI"),
		DeviceID:         r.str("webtunnel.deviceId"),
		DeviceName:       r.str("webtunnel.deviceName"),
		DeviceVersion:    r.str("webtunnel.deviceVersion"),
		Secret:           r.str("webtunnel.password"),
		Ports:            r.ports("webtunnel.ports"),
		LocalAddr:        r.str("webtunnel.host"),
		HTTPPort:         r.port("webtunnel.httpPort"),
		HTTPSEnable:      r.flag("webtunnel.https.enable", false),
		SSHPort:          r.port("webtunnel.sshPort"),
		VNCPort:          r.port("webtunnel.vncPort"),
		RDPPort:          r.port("webtunnel.rdpPort"),
		AppPort:          r.port("webtunnel.appPort"),
		ConnectTimeout:   r.seconds("http.timeout"),
		LocalTimeout:     r.seconds("webtunnel.connectTimeout"),
		LocalIdleTimeout: r.seconds("webtunnel.localTimeout"),
		CAFile:           r.str("tls.caLocation"),
		// WebTunnelAgent accepts unknown certificates when the key is
		// absent; we verify unless told otherwise.
		Insecure: r.flag("tls.acceptUnknownCertificate", false) || r.str("tls.verification") == "none",
	}
	if c.Secret == "" {
		c.Secret, _ = sys.env(SecretEnv)
	}
	if r.flag("http.proxy.enable", false) {
		c.Proxy = r.proxy()
		if c.Proxy == nil {
			// As WebTunnelAgent does: without a host, no proxy.
			logger.Warn("http.proxy.enable is true but no proxy host is set; connecting directly", "file", path)
		}
	}
	if len(r.errs) > 0 {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(r.errs...))
	}

	var unknown, unresolved []string
	for _, k := range props.Keys() {
		switch {
		case !slices.Contains(usedKeys, k) && !ignoredKey(k):
			unknown = append(unknown, k)
		case slices.Contains(usedKeys, k):
			// Values are not logged: one of them is the secret.
			if v, _ := props.Get(k); strings.Contains(v, "${") {
				unresolved = append(unresolved, k)
			}
		}
	}
	if len(unknown) > 0 {
		logger.Info("ignoring unknown keys in agent config", "file", path, "keys", unknown)
	}
	if len(unresolved) > 0 {
		logger.Warn("unresolved ${…} references in agent config", "file", path, "keys", unresolved)
	}
	return c, nil
}

// usedKeys are the keys LoadProperties reads.
var usedKeys = []string{
	"webtunnel.reflectorURI", "webtunnel.deviceId", "webtunnel.deviceName", "webtunnel.deviceVersion",
	"webtunnel.password", "webtunnel.ports", "webtunnel.host", "webtunnel.httpPort", "webtunnel.https.enable",
	"webtunnel.sshPort", "webtunnel.vncPort", "webtunnel.rdpPort", "webtunnel.appPort",
	"http.timeout", "webtunnel.connectTimeout", "webtunnel.localTimeout",
	"http.proxy.enable", "http.proxy.host", "http.proxy.port", "http.proxy.username", "http.proxy.password", "http.proxy.url",
	"tls.caLocation", "tls.acceptUnknownCertificate", "tls.verification",
}

// ignoredKeys are WebTunnelAgent keys our agent does without, silently,
// because what they configure it does otherwise. Keys whose loss changes what
// a device does are not here and get logged: webtunnel.properties.* (custom
// device properties), webtunnel.status.notify (a script run on connect),
// webtunnel.httpPath, webtunnel.vpnPort, tls.privateKey and tls.certificate
// (a client certificate).
var ignoredKeys = []string{
	"webtunnel.enable",                    // macchina.io EDGE's switch: a running agent is enabled
	"webtunnel.domain",                    // macchina's account grouping; Reflector groups devices itself
	"webtunnel.tenant",                    // likewise
	"webtunnel.username",                  // ${deviceId}@${domain}: our agent authenticates as the device id
	"webtunnel.userAgent",                 // we declare our own version
	"webtunnel.remoteTimeout",             // smux keep-alive finds dead tunnels
	"webtunnel.threads",                   // goroutines
	"webtunnel.propertiesUpdateInterval",  // re-sends webtunnel.properties.*, which are not supported
	"tls.ciphers",                         // crypto/tls defaults: modern ciphers,
	"tls.minVersion",                      // TLS 1.2 at least,
	"tls.extendedCertificateVerification", // and host names always checked
}

// ignoredPrefixes are groups of ignoredKeys.
var ignoredPrefixes = []string{
	"logging.",         // POCO logging channels; the agent logs with slog
	"webtunnel.https.", // TLS toward the device's web server (except .enable, used): the reflector's side
	"webtunnel.auth.",  // smux flow control per stream
}

func ignoredKey(k string) bool {
	if slices.Contains(ignoredKeys, k) {
		return true
	}
	for _, p := range ignoredPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// propReader reads typed values from Properties as POCO's
// AbstractConfiguration does, collecting errors with their lines. An empty
// value counts as unset (POCO would fail on an empty number).
type propReader struct {
	p    *Properties
	file string
	errs []error
}

func (r *propReader) str(key string) string {
	v, _ := r.p.Get(key)
	return v
}

func (r *propReader) fail(key, format string, args ...any) {
	r.errs = append(r.errs, &PropertyError{File: r.file, Line: r.p.Line(key), Key: key, Err: fmt.Errorf(format, args...)})
}

func (r *propReader) ports(key string) []uint16 {
	ports, err := tunnel.ParsePorts(r.str(key))
	if err != nil {
		r.fail(key, "%v", err)
	}
	return ports
}

func (r *propReader) port(key string) uint16 {
	v := r.str(key)
	if v == "" {
		return 0
	}
	n, err := parsePocoInt(v)
	if err != nil || n < 0 || n > 65535 {
		r.fail(key, "%q is not a port number", v)
		return 0
	}
	return uint16(n)
}

// seconds reads a whole number of seconds; unset is 0.
func (r *propReader) seconds(key string) time.Duration {
	v := r.str(key)
	if v == "" {
		return 0
	}
	n, err := parsePocoInt(v)
	if err != nil || n < 0 || n > 1<<31 {
		r.fail(key, "%q is not a number of seconds", v)
		return 0
	}
	return time.Duration(n) * time.Second
}

func (r *propReader) flag(key string, def bool) bool {
	v := r.str(key)
	if v == "" {
		return def
	}
	b, ok := parsePocoBool(v)
	if !ok {
		r.fail(key, "%q is not a boolean (true or false)", v)
		return def
	}
	return b
}

// proxy reads http.proxy.host and .port (default 80, as WebTunnelAgent's),
// or, when no host is set, http.proxy.url; nil when neither names a host.
// Explicit username and password win over those in the URL.
func (r *propReader) proxy() *ProxyConfig {
	p := &ProxyConfig{
		Host:     r.str("http.proxy.host"),
		Port:     r.port("http.proxy.port"),
		Username: r.str("http.proxy.username"),
		Password: r.str("http.proxy.password"),
	}
	if p.Host == "" && r.str("http.proxy.url") != "" {
		u, err := url.Parse(r.str("http.proxy.url"))
		if err != nil || u.Hostname() == "" {
			r.fail("http.proxy.url", "not a proxy URL such as http://proxy.example.com:3128")
			return nil
		}
		p.Host = u.Hostname()
		if u.Port() != "" {
			n, err := strconv.ParseUint(u.Port(), 10, 16)
			if err != nil || n == 0 {
				r.fail("http.proxy.url", "port %q is not a port number", u.Port())
				return nil
			}
			p.Port = uint16(n)
		}
		if p.Username == "" && u.User != nil {
			p.Username = u.User.Username()
			p.Password, _ = u.User.Password()
		}
	}
	if p.Host == "" {
		return nil
	}
	if p.Port == 0 {
		p.Port = 80
	}
	return p
}

// parsePocoInt parses as AbstractConfiguration::parseInt: decimal, or hex
// after "0x".
func parsePocoInt(s string) (int64, error) {
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		n, err := strconv.ParseUint(h, 16, 31)
		return int64(n), err
	}
	return strconv.ParseInt(s, 10, 32)
}

// parsePocoBool parses as AbstractConfiguration::parseBool: a number (true
// unless 0), or true/yes/on, false/no/off in any case.
func parsePocoBool(s string) (bool, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n != 0, true
	}
	switch strings.ToLower(s) {
	case "true", "yes", "on":
		return true, true
	case "false", "no", "off":
		return false, true
	}
	return false, false
}
