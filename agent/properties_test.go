package agent

import (
	"errors"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// testSys is a fixed system for expansion tests.
func propTestSys() sysLookup {
	env := map[string]string{"DEVICE_ID": "pump-17", "EMPTY": "", "TEMPLATE": "${webtunnel.domain}"}
	return sysLookup{
		env:      func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		hostname: func() (string, error) { return "gw-3", nil },
		nodeID:   func() string { return "0242ac110002" },
	}
}

func parsePropString(t *testing.T, s string) (*Properties, error) {
	t.Helper()
	return parseProperties(strings.NewReader(s), propTestSys())
}

func TestParsePropertiesSyntax(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want map[string]string
	}{
		{"equals", "a=1", map[string]string{"a": "1"}},
		{"equals with blanks", "  a  =  1  ", map[string]string{"a": "1"}},
		{"colon", "a: 1", map[string]string{"a": "1"}},
		{"first separator wins", "a = b=c:d", map[string]string{"a": "b=c:d"}},
		{"colon before equals", "a:b=c", map[string]string{"a": "b=c"}},
		{"blank is no separator", "a b", map[string]string{"a b": ""}},
		{"empty value", "a =\nb=   \n", map[string]string{"a": "", "b": ""}},
		{"hash comment", "# a = 1\nb = 2", map[string]string{"b": "2"}},
		{"bang comment", "! a = 1\nb = 2", map[string]string{"b": "2"}},
		{"indented comment", "   # a = 1\n\t! c\nb = 2", map[string]string{"b": "2"}},
		{"hash inside value is kept", "webtunnel.password = abc#1!2", map[string]string{"webtunnel.password": "abc#1!2"}},
		{"blank lines", "\n\n a = 1 \n\n\n b = 2\n\n", map[string]string{"a": "1", "b": "2"}},
		{"CRLF", "a = 1\r\nb = 2\r\n", map[string]string{"a": "1", "b": "2"}},
		{"lone CR", "a = 1\rb = 2\r", map[string]string{"a": "1", "b": "2"}},
		{"no final newline", "a = 1", map[string]string{"a": "1"}},
		{"later setting wins", "a = 1\na = 2", map[string]string{"a": "2"}},
		{"continuation", "a = 80, \\\n22\nb = x", map[string]string{"a": "80, 22", "b": "x"}},
		{"continuation keeps indent, as POCO does", "a = x\\\n   y", map[string]string{"a": "x   y"}},
		{"continuation over CRLF", "a = x\\\r\ny\r\nb = z", map[string]string{"a": "xy", "b": "z"}},
		{"continuation of several lines", "a = 1\\\n2\\\n3", map[string]string{"a": "123"}},
		{"continuation at end of file", "a = x\\\n", map[string]string{"a": "x"}},
		{"backslash at end of file", "a = x\\", map[string]string{"a": "x"}},
		{"escapes", `a = 1\t2\n3\r4\f5`, map[string]string{"a": "1\t2\n3\r4\f5"}},
		{"escaped backslash", `a = C:\\dir\\file`, map[string]string{"a": `C:\dir\file`}},
		{"escaped separators", `a = x\=y\:z`, map[string]string{"a": "x=y:z"}},
		{"other escapes drop the backslash", `a = \a\b\u0041`, map[string]string{"a": "abu0041"}},
		{"escaped backslash before newline is no continuation", "a = x\\\\\nb = y", map[string]string{"a": `x\`, "b": "y"}},
		{"trimmed after unescaping", `a = \ x\t`, map[string]string{"a": "x"}},
		{"keys are literal", `a\tb = 1`, map[string]string{`a\tb`: "1"}},
		{"utf-8", "webtunnel.deviceName = Pumpe Nr. 17 – Süd", map[string]string{"webtunnel.deviceName": "Pumpe Nr. 17 – Süd"}},
		{"empty file", "", map[string]string{}},
		{"only comments", "# x\n! y\n", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePropString(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string]string)
			for _, k := range p.Keys() {
				got[k], _ = p.Get(k)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePropertiesLineNumbers(t *testing.T) {
	in := "# comment\r\n" + // 1
		"a = 1\r\n" + // 2
		"\n" + // 3
		"b = x\\\n" + // 4
		"    y\n" + // 5
		"\r" + // 6
		"  c : 3\n" + // 7
		"a = again\n" // 8
	p, err := parsePropString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"a": 8, "b": 4, "c": 7, "missing": 0} {
		if got := p.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestParsePropertiesSyntaxErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		line     int
		sentinel error
	}{
		{"empty key", "a = 1\n\n = 2\n", 3, ErrPropertySyntax},
		{"empty key with colon", "a = 1\n:x", 2, ErrPropertySyntax},
		{"NUL byte", "a = 1\nb = x\x00y\n", 2, ErrPropertySyntax},
		{"too large", "a = " + strings.Repeat("x", maxPropertiesFile), 1, ErrPropertiesTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePropString(t, tt.in)
			var pe *PropertyError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PropertyError", err)
			}
			if !errors.Is(err, tt.sentinel) || pe.Line != tt.line {
				t.Errorf("err = %v (line %d), want %v at line %d", err, pe.Line, tt.sentinel, tt.line)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Errorf("message %q does not start with the line", err)
			}
		})
	}
}

func TestExpandReferences(t *testing.T) {
	tests := []struct {
		name, in, key, want string
	}{
		{"environment variable", "id = ${system.env.DEVICE_ID}", "id", "pump-17"},
		{"empty environment variable", "id = x${system.env.EMPTY}y", "id", "xy"},
		{"unset environment variable is left", "id = ${system.env.NOPE}", "id", "${system.env.NOPE}"},
		{"environment value is not expanded", "webtunnel.domain = d\nid = ${system.env.TEMPLATE}", "id", "${webtunnel.domain}"},
		{"nodeName", "n = ${system.nodeName}", "n", "gw-3"},
		{"hostName", "n = host ${system.hostName}!", "n", "host gw-3!"},
		{"nodeId, as in the stock file", "webtunnel.deviceId = c9eebed5-8705-4763-8822-${system.nodeId}", "webtunnel.deviceId", "c9eebed5-8705-4763-8822-0242ac110002"},
		{"another key", "webtunnel.deviceId = pump-17\nwebtunnel.domain = d0\nwebtunnel.username = ${webtunnel.deviceId}@${webtunnel.domain}",
			"webtunnel.username", "pump-17@d0"},
		{"a key set later", "u = ${id}\nid = pump-17", "u", "pump-17"},
		{"nested keys", "a = ${b}/${b}\nb = <${c}>\nc = ${system.env.DEVICE_ID}", "a", "<pump-17>/<pump-17>"},
		{"the setting in effect", "b = 1\na = ${b}\nb = 2", "a", "2"},
		{"a file key wins over the system", "system.nodeName = mine\nn = ${system.nodeName}", "n", "mine"},
		{"unknown key is left", "a = ${nope} and ${system.osName}", "a", "${nope} and ${system.osName}"},
		{"unterminated reference is left", "b = 1\na = x${b", "a", "x${b"},
		{"empty reference is left", "a = ${}", "a", "${}"},
		{"lone dollars", "a = $ $$ $x ${", "a", "$ $$ $x ${"},
		{"dollar before reference", "b = 1\na = $${b}", "a", "$1"},
		{"escaped braces are braces", `b = 1` + "\n" + `a = \$\{b\}`, "a", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePropString(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := p.Get(tt.key); !ok || got != tt.want {
				t.Errorf("Get(%q) = %q, %v; want %q", tt.key, got, ok, tt.want)
			}
		})
	}
}

func TestExpandCyclesAreErrors(t *testing.T) {
	// chain returns n keys k(i) = ${k(i+1)}, the last "end", top first or
	// last.
	chain := func(n int, topFirst bool) string {
		lines := make([]string, n)
		for i := range n - 1 {
			lines[i] = "k" + propTestName(i) + " = ${k" + propTestName(i+1) + "}"
		}
		lines[n-1] = "k" + propTestName(n-1) + " = end"
		if !topFirst {
			slices.Reverse(lines)
		}
		return strings.Join(lines, "\n")
	}
	tests := []struct {
		name, in string
		sentinel error
		line     int
		msg      string
	}{
		{"self", "x = 1\na = <${a}>", ErrReferenceCycle, 2, "line 2: a: reference cycle: ${a} -> ${a}"},
		{"two keys", "a = ${b}\nb = ${a}", ErrReferenceCycle, 1, "line 1: a: reference cycle: ${a} -> ${b} -> ${a}"},
		{"through a third key", "x = 1\nc = ${a}\na = ${b}\nb = ${a}", ErrReferenceCycle, 3, "line 3: a: reference cycle: ${a} -> ${b} -> ${a}"},
		{"too deep", chain(maxReferenceDepth+1, true), ErrReferenceDepth, 1, "line 1: kaa: references nest too deep: more than 16 levels"},
		{"too deep, written bottom up", chain(maxReferenceDepth+1, false), ErrReferenceDepth, maxReferenceDepth + 1, "kaa: references nest too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePropString(t, tt.in)
			var pe *PropertyError
			if !errors.Is(err, tt.sentinel) || !errors.As(err, &pe) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			if pe.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q (line %d), want line %d and %q", err, pe.Line, tt.line, tt.msg)
			}
		})
	}

	t.Run("deep but not too deep", func(t *testing.T) {
		for _, topFirst := range []bool{true, false} {
			p, err := parsePropString(t, chain(maxReferenceDepth, topFirst))
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := p.Get("kaa"); v != "end" {
				t.Errorf("kaa = %q", v)
			}
		}
	})
}

// propTestName names key i: aa, ab, …
func propTestName(i int) string { return string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func TestExpandBlowUpIsBounded(t *testing.T) {
	// Each key doubles the one below: without a budget, k0 would be 2^15 ×
	// 2 KiB. It must fail fast instead.
	var b strings.Builder
	for i := range 15 {
		b.WriteString("k" + propTestName(i) + " = ${k" + propTestName(i+1) + "}${k" + propTestName(i+1) + "}\n")
	}
	b.WriteString("k" + propTestName(15) + " = " + strings.Repeat("x", 2048) + "\n")
	start := time.Now()
	_, err := parsePropString(t, b.String())
	if !errors.Is(err, ErrPropertiesTooLarge) {
		t.Fatalf("err = %v, want ErrPropertiesTooLarge", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestHostnameIsAskedOnlyWhenReferenced(t *testing.T) {
	sys := propTestSys()
	asked := 0
	sys.hostname = func() (string, error) { asked++; return "", errors.New("no uname") }

	if _, err := parseProperties(strings.NewReader("a = 1\n"), sys); err != nil || asked != 0 {
		t.Fatalf("err = %v, hostname asked %d times", err, asked)
	}
	_, err := parseProperties(strings.NewReader("a = 1\nwebtunnel.deviceName = ${system.nodeName}\n"), sys)
	var pe *PropertyError
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Key != "webtunnel.deviceName" || !strings.Contains(err.Error(), "no uname") {
		t.Errorf("err = %v", err)
	}
}

func TestParsePropertiesDefaultsToTheRealSystem(t *testing.T) {
	t.Setenv("REFLECTOR_TEST_PROPERTY", "from-env")
	p, err := ParseProperties(strings.NewReader("a = ${system.env.REFLECTOR_TEST_PROPERTY}\nb = ${system.nodeId}"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Get("a"); v != "from-env" {
		t.Errorf("a = %q", v)
	}
	if v, _ := p.Get("b"); !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(v) {
		t.Errorf("system.nodeId = %q, want 12 hex digits", v)
	}
}

func TestParsePropertiesInjected(t *testing.T) {
	env := func(k string) (string, bool) { return "E-" + k, true }
	host := func() (string, error) { return "box", nil }
	p, err := ParseProperties(strings.NewReader("a = ${system.env.X}@${system.nodeName}"), env, host)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Get("a"); !ok || v != "E-X@box" {
		t.Errorf("a = %q, %v", v, ok)
	}
	if _, ok := p.Get("b"); ok {
		t.Error("b is set")
	}
}

func FuzzParseProperties(f *testing.F) {
	for _, s := range []string{
		"a = 1\nb: 2\n# c\n! d\n",
		"a = x\\\n  y\r\nb = \\t\\n\\=\\:\\\\",
		"a = ${b}\nb = ${c}\nc = ${system.env.HOME}${system.nodeName}${system.nodeId}",
		"a = ${a}",
		"a = ${b}${b}\nb = ${c}${c}\nc = xxxxxxxx",
		"key value\n = x\n",
		"a = ${b",
		"\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseProperties(strings.NewReader(string(data)), propTestSys())
		if err != nil {
			var pe *PropertyError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("error %v is not a *PropertyError with a line", err)
			}
			return
		}
		for _, k := range p.Keys() {
			if _, ok := p.Get(k); !ok || p.Line(k) < 1 {
				t.Fatalf("key %q: not gettable or no line", k)
			}
			if k == "" || strings.TrimFunc(k, isPocoSpaceRune) != k {
				t.Fatalf("key %q is empty or untrimmed", k)
			}
		}
	})
}
