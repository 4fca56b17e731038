package agent

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

const cfgTestFile = "testdata/WebTunnelAgent.properties"

// cfgTestSys is a system whose environment holds env.
func cfgTestSys(env map[string]string) sysLookup {
	return sysLookup{
		env:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		hostname: func() (string, error) { return "gw-3", nil },
		nodeID:   func() string { return "0242ac110002" },
	}
}

// cfgTestLogger logs text into a buffer.
func cfgTestLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// cfgTestWrite writes a properties file and returns its path.
func cfgTestWrite(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "WebTunnelAgent.properties")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cfgTestLoad loads content with DEVICE_ID=pump-17 in the environment.
func cfgTestLoad(t *testing.T, content string) (Config, error) {
	t.Helper()
	return loadProperties(cfgTestWrite(t, content), nil, cfgTestSys(map[string]string{"DEVICE_ID": "pump-17"}))
}

// cfgTestValid returns a Config that passes Validate.
func cfgTestValid() Config {
	return Config{
		ReflectorURL:   "https://reflector.example.com:8443",
		DeviceID:       "pump-17",
		Secret:         "s3cret",
		Ports:          []uint16{80, 22},
		LocalAddr:      "127.0.0.1",
		HTTPPort:       80,
		ConnectTimeout: 10 * time.Second,
		LocalTimeout:   10 * time.Second,
	}
}

func TestLoadPropertiesReadsAWebTunnelAgentFileUnchanged(t *testing.T) {
	logger, logs := cfgTestLogger()
	cfg, err := loadProperties(cfgTestFile, logger, cfgTestSys(map[string]string{"DEVICE_ID": "pump-17"}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		ReflectorURL:     "https://reflector.my-devices.net",
		DeviceID:         "pump-17",
		DeviceName:       "Pump 17",
		Secret:           "s3cret",
		Ports:            []uint16{80, 22},
		LocalAddr:        "127.0.0.1",
		HTTPPort:         80,
		SSHPort:          22,
		LocalTimeout:     10 * time.Second, // webtunnel.connectTimeout
		LocalIdleTimeout: 15 * time.Second, // webtunnel.localTimeout
		Insecure:         true,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	if logs.Len() != 0 {
		t.Errorf("a stock file should load without log lines, got:\n%s", logs)
	}

	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.ConnectTimeout != DefaultConnectTimeout {
		t.Errorf("ConnectTimeout = %v, want the default", cfg.ConnectTimeout)
	}
	wantProps := map[string]string{"deviceName": "Pump 17", "httpPort": "80", "httpsEnable": "false", "sshPort": "22"}
	if got := cfg.Properties(); !maps.Equal(got, wantProps) {
		t.Errorf("Properties() = %v, want %v", got, wantProps)
	}
}

func TestLoadPropertiesUsesTheRealEnvironment(t *testing.T) {
	t.Setenv("DEVICE_ID", "pump-18")
	cfg, err := LoadProperties(cfgTestFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceID != "pump-18" {
		t.Errorf("DeviceID = %q", cfg.DeviceID)
	}
}

func TestLoadPropertiesLogsUnknownKeysOnce(t *testing.T) {
	stock, err := os.ReadFile(cfgTestFile)
	if err != nil {
		t.Fatal(err)
	}
	path := cfgTestWrite(t, string(stock)+`
webtunnel.status.notify = /usr/local/bin/tunnel-status
webtunnel.properties.serial = 4711
my.own.key = 1
webtunnel.https.caLocation = /etc/ssl/device
webtunnel.auth.delay = 10
`)
	logger, logs := cfgTestLogger()
	if _, err := loadProperties(path, logger, cfgTestSys(map[string]string{"DEVICE_ID": "pump-17"})); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one log line, got:\n%s", logs)
	}
	for _, want := range []string{
		"level=INFO",
		`msg="ignoring unknown keys in agent config"`,
		"file=" + path,
		`keys="[my.own.key webtunnel.properties.serial webtunnel.status.notify]"`,
	} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q lacks %q", lines[0], want)
		}
	}
}

func TestLoadPropertiesReportsBadValuesWithTheirLines(t *testing.T) {
	path := cfgTestWrite(t, `webtunnel.reflectorURI = https://r.example.com
webtunnel.httpPort = eighty
webtunnel.ports = 80, 70000
webtunnel.https.enable = maybe
webtunnel.connectTimeout = -1
webtunnel.sshPort = 0x16
`)
	_, err := loadProperties(path, nil, cfgTestSys(nil))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{
		path + `:2: webtunnel.httpPort: "eighty" is not a port number`,
		path + `:3: webtunnel.ports: port "70000" is not a number from 1 to 65535`,
		path + `:4: webtunnel.https.enable: "maybe" is not a boolean`,
		path + `:5: webtunnel.connectTimeout: "-1" is not a number of seconds`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "sshPort") {
		t.Errorf("0x16 is a port, as in POCO: %v", err)
	}
}

func TestLoadPropertiesTypedValuesAsPOCOReadsThem(t *testing.T) {
	cfg, err := cfgTestLoad(t, `webtunnel.sshPort = 0x16
webtunnel.https.enable = Yes
tls.acceptUnknownCertificate = 0
webtunnel.httpPort =
http.timeout = 30
webtunnel.ports = 80;443 ; 80,,22
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSHPort != 22 || !cfg.HTTPSEnable || cfg.Insecure || cfg.HTTPPort != 0 || cfg.ConnectTimeout != 30*time.Second {
		t.Errorf("got %+v", cfg)
	}
	if !slices.Equal(cfg.Ports, []uint16{80, 443, 22}) {
		t.Errorf("Ports = %v", cfg.Ports)
	}
}

func TestLoadPropertiesSecret(t *testing.T) {
	env := map[string]string{SecretEnv: "from-env"}
	tests := []struct{ name, file, want string }{
		{"from the file", "webtunnel.password = from-file", "from-file"},
		{"from the environment when the file sets none", "webtunnel.password =", "from-env"},
		{"from the environment when the key is absent", "", "from-env"},
		{"through a reference", "webtunnel.password = ${system.env.PW}", "from-ref"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := maps.Clone(env)
			env["PW"] = "from-ref"
			cfg, err := loadProperties(cfgTestWrite(t, tt.file), nil, cfgTestSys(env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Secret != tt.want {
				t.Errorf("Secret = %q, want %q", cfg.Secret, tt.want)
			}
		})
	}
}

func TestLoadPropertiesProxy(t *testing.T) {
	tests := []struct {
		name, file string
		want       *ProxyConfig
	}{
		{"disabled", "http.proxy.enable = false\nhttp.proxy.host = proxy.nowhere.com\nhttp.proxy.port = 80", nil},
		{"absent", "", nil},
		{"enabled", "http.proxy.enable = true\nhttp.proxy.host = proxy.corp\nhttp.proxy.port = 3128\nhttp.proxy.username = u\nhttp.proxy.password = p",
			&ProxyConfig{Host: "proxy.corp", Port: 3128, Username: "u", Password: "p"}},
		{"default port 80", "http.proxy.enable = true\nhttp.proxy.host = proxy.corp", &ProxyConfig{Host: "proxy.corp", Port: 80}},
		{"enabled without a host", "http.proxy.enable = true\nhttp.proxy.host =", nil},
		{"url when no host", "http.proxy.enable = true\nhttp.proxy.url = http://a:b@proxy.corp:8080",
			&ProxyConfig{Host: "proxy.corp", Port: 8080, Username: "a", Password: "b"}},
		{"host wins over url", "http.proxy.enable = true\nhttp.proxy.host = h\nhttp.proxy.url = http://proxy.corp:8080",
			&ProxyConfig{Host: "h", Port: 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := cfgTestLoad(t, tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Proxy, tt.want) {
				t.Errorf("Proxy = %+v, want %+v", cfg.Proxy, tt.want)
			}
		})
	}
}

func TestLoadPropertiesWarnsWhenAnEnabledProxyHasNoHost(t *testing.T) {
	logger, logs := cfgTestLogger()
	path := cfgTestWrite(t, "http.proxy.enable = true\n")
	if _, err := loadProperties(path, logger, cfgTestSys(nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "no proxy host") {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestLoadPropertiesTLS(t *testing.T) {
	tests := []struct {
		name, file string
		insecure   bool
	}{
		// WebTunnelAgent accepts any certificate when the key is absent;
		// Reflector's agent does not.
		{"absent", "", false},
		{"accept unknown", "tls.acceptUnknownCertificate = true", true},
		{"reject unknown", "tls.acceptUnknownCertificate = false\ntls.verification = relaxed", false},
		{"verification none", "tls.acceptUnknownCertificate = false\ntls.verification = none", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := cfgTestLoad(t, tt.file+"\ntls.caLocation = /etc/ssl/reflector.pem")
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Insecure != tt.insecure || cfg.CAFile != "/etc/ssl/reflector.pem" {
				t.Errorf("Insecure = %v, CAFile = %q", cfg.Insecure, cfg.CAFile)
			}
		})
	}
}

func TestLoadPropertiesMissingFileIsNotAConfigError(t *testing.T) {
	_, err := LoadProperties(filepath.Join(t.TempDir(), "nope.properties"), nil)
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalidConfig) {
		t.Errorf("err = %v", err)
	}
}

func TestLoadPropertiesSyntaxErrorNamesFileAndLine(t *testing.T) {
	path := cfgTestWrite(t, "a = 1\n= 2\n")
	_, err := LoadProperties(path, nil)
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, ErrPropertySyntax) || !strings.Contains(err.Error(), path+":2: ") {
		t.Errorf("err = %v", err)
	}
	path = cfgTestWrite(t, "a = ${b}\nb = ${a}\n")
	_, err = LoadProperties(path, nil)
	if !errors.Is(err, ErrReferenceCycle) || !strings.Contains(err.Error(), path+":1: a: ") {
		t.Errorf("err = %v", err)
	}
}

func TestLoadPropertiesWarnsOfUnresolvedReferencesWithoutValues(t *testing.T) {
	logger, logs := cfgTestLogger()
	path := cfgTestWrite(t, `webtunnel.deviceId = ${system.env.DEVICE_ID}
webtunnel.password = top${secret}
logging.channels.file.path = ${application.dir}agent.log
`)
	cfg, err := loadProperties(path, logger, cfgTestSys(nil))
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `keys="[webtunnel.deviceId webtunnel.password]"`) {
		t.Errorf("logs:\n%s", out)
	}
	if strings.Contains(out, "top") || strings.Contains(out, "application.dir") {
		t.Errorf("logs show values:\n%s", out)
	}
	err = cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `device id "${system.env.DEVICE_ID}" has an unresolved`) {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no reflector URL", func(c *Config) { c.ReflectorURL = "" }, "reflector URL is not set"},
		{"unparsable URL", func(c *Config) { c.ReflectorURL = "https://[::1" }, "reflector URL: "},
		{"ftp URL", func(c *Config) { c.ReflectorURL = "ftp://r.example.com" }, "scheme must be"},
		{"URL without scheme", func(c *Config) { c.ReflectorURL = "r.example.com:8443" }, "scheme must be"},
		{"URL without host", func(c *Config) { c.ReflectorURL = "https:///x" }, "has no host"},
		{"URL with credentials", func(c *Config) { c.ReflectorURL = "https://u:pw@r.example.com" }, "must not carry credentials"},
		{"URL with query", func(c *Config) { c.ReflectorURL = "https://r.example.com/?a=b" }, "no query"},
		{"no device id", func(c *Config) { c.DeviceID = "" }, "device id is not set"},
		{"mixed-case device id", func(c *Config) { c.DeviceID = "Pump-17" }, `device id "Pump-17" has upper-case letters: a device id is a lower-case DNS label, such as "pump-17"`},
		{"device id with a dot", func(c *Config) { c.DeviceID = "pump.17" }, "is not a DNS label"},
		{"device id with a leading hyphen", func(c *Config) { c.DeviceID = "-pump" }, "is not a DNS label"},
		{"device id too long", func(c *Config) { c.DeviceID = strings.Repeat("a", 64) }, "is not a DNS label"},
		{"no secret", func(c *Config) { c.Secret = "" }, "device secret is not set (webtunnel.password, or $REFLECTOR_DEVICE_SECRET)"},
		{"no ports", func(c *Config) { c.Ports = nil; c.HTTPPort = 0 }, "no ports to forward"},
		{"port 0", func(c *Config) { c.Ports = []uint16{80, 0} }, "port 0 cannot be forwarded"},
		{"HTTP port not forwarded", func(c *Config) { c.HTTPPort = 8080 }, "HTTP port 8080 (webtunnel.httpPort) is not among the forwarded ports 80,22"},
		{"negative connect timeout", func(c *Config) { c.ConnectTimeout = -time.Second }, "connect timeout -1s is negative"},
		{"negative local timeout", func(c *Config) { c.LocalTimeout = -time.Second }, "local timeout -1s is negative"},
		{"negative idle timeout", func(c *Config) { c.LocalIdleTimeout = -time.Second }, "local idle timeout -1s is negative"},
		{"proxy without host", func(c *Config) { c.Proxy = &ProxyConfig{Port: 3128} }, "proxy host is not set"},
		{"proxy without port", func(c *Config) { c.Proxy = &ProxyConfig{Host: "p"} }, "proxy port is not set"},
		{"fingerprint without algorithm", func(c *Config) { c.Fingerprint = strings.Repeat("ab", 32) }, "want \"sha256:\" and 64 hex digits"},
		{"short fingerprint", func(c *Config) { c.Fingerprint = "sha256:abcd" }, "want \"sha256:\""},
		{"fingerprint not hex", func(c *Config) { c.Fingerprint = "sha256:" + strings.Repeat("zz", 32) }, "want \"sha256:\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfgTestValid()
			tt.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := (&Config{}).Validate()
	for _, want := range []string{"reflector URL is not set", "device id is not set", "device secret is not set", "no ports"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err lacks %q:\n%v", want, err)
		}
	}
}

func TestValidateFillsDefaultsAndNormalises(t *testing.T) {
	c := Config{
		ReflectorURL: "wss://r.example.com:8443//",
		DeviceID:     "c9eebed5-8705-4763-8822-0242ac110002",
		Secret:       "s",
		Ports:        []uint16{22},
		Fingerprint:  "SHA256:" + strings.Repeat("AB:", 31) + "AB",
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := c
	want.ReflectorURL = "wss://r.example.com:8443"
	want.LocalAddr = DefaultLocalAddr
	want.ConnectTimeout = DefaultConnectTimeout
	want.LocalTimeout = DefaultLocalTimeout
	want.Fingerprint = "sha256:" + strings.Repeat("ab", 32)
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("second Validate changed something or failed: %v", err)
	}
	for _, u := range []string{"http://r", "ws://r:80", "HTTPS://R.EXAMPLE.COM/base"} {
		c := cfgTestValid()
		c.ReflectorURL = u
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestConfigPropertiesSendsOnlyWhatIsSet(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want map[string]string
	}{
		{"nothing", Config{Ports: []uint16{22}}, map[string]string{}},
		{"everything", Config{DeviceName: "Pump 17", DeviceVersion: "2.1", HTTPPort: 443, HTTPSEnable: true,
			SSHPort: 22, VNCPort: 5900, RDPPort: 3389, AppPort: 502},
			map[string]string{"deviceName": "Pump 17", "deviceVersion": "2.1", "httpPort": "443", "httpsEnable": "true",
				"sshPort": "22", "vncPort": "5900", "rdpPort": "3389", "appPort": "502"}},
		{"plain HTTP", Config{HTTPPort: 8080}, map[string]string{"httpPort": "8080", "httpsEnable": "false"}},
		{"a device beside the agent", Config{LocalAddr: "192.168.1.10"}, map[string]string{"targetHost": "192.168.1.10"}},
		{"the agent's own machine", Config{LocalAddr: "127.0.0.1"}, map[string]string{}},
		{"localhost", Config{LocalAddr: "LocalHost"}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Properties()
			if !maps.Equal(got, tt.want) {
				t.Errorf("Properties() = %v, want %v", got, tt.want)
			}
			for k := range got {
				if !slices.Contains(tunnel.PropertyNames, k) {
					t.Errorf("%q is not a property the reflector knows", k)
				}
			}
		})
	}
}

func TestConfigLogValueHidesSecrets(t *testing.T) {
	logger, logs := cfgTestLogger()
	c := cfgTestValid()
	c.Proxy = &ProxyConfig{Host: "proxy.corp", Port: 3128, Username: "u", Password: "proxy-pw"}
	logger.Info("starting", "config", c)
	out := logs.String()
	if strings.Contains(out, "s3cret") || strings.Contains(out, "proxy-pw") {
		t.Errorf("secret in log: %s", out)
	}
	if !strings.Contains(out, "config.device=pump-17") || !strings.Contains(out, "config.proxy=proxy.corp:3128") {
		t.Errorf("log lacks the config: %s", out)
	}
}
