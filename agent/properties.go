package agent

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
)

// This file reads Java-style properties files the way POCO's
// PropertyFileConfiguration and AbstractConfiguration do, because
// WebTunnelAgent.properties files are written for (and tested against) POCO,
// not Java. The differences from java.util.Properties matter:
//
//   - The separator is the first '=' or ':'; a blank is not a separator. A
//     line without either ("key value") sets the key "key value" to "".
//   - Escapes (\t \n \r \f, and \x for any other x) apply to values only;
//     keys are taken literally. There are no \uXXXX escapes.
//   - A backslash before the line break joins the next line, whose leading
//     blanks are kept (Java drops them).
//   - Key and value are trimmed after unescaping, so a trailing "\t" vanishes.
//   - '#' or '!' starts a comment only as the first non-blank of a line.
//   - ${name} in a value is replaced by the key name of the same file, or by
//     ${system.env.NAME}, ${system.nodeName} and the like; an unknown name is
//     left as written.

// Sentinel errors of ParseProperties, wrapped in a *PropertyError.
var (
	// ErrPropertySyntax: a line cannot be read as "key = value".
	ErrPropertySyntax = errors.New("syntax error")
	// ErrReferenceCycle: ${key} references loop.
	ErrReferenceCycle = errors.New("reference cycle")
	// ErrReferenceDepth: ${key} references nest deeper than
	// maxReferenceDepth.
	ErrReferenceDepth = errors.New("references nest too deep")
	// ErrPropertiesTooLarge: the file, or the values after expansion, exceed
	// the limits below.
	ErrPropertiesTooLarge = errors.New("too large")
)

const (
	// maxPropertiesFile bounds the file: real ones are a few KiB.
	maxPropertiesFile = 1 << 20
	// maxExpandedTotal bounds all expanded values together, so that a file
	// such as "a=${b}${b}, b=${c}${c}, …" cannot expand exponentially.
	maxExpandedTotal = 8 << 20
	// maxReferenceDepth bounds chains of ${key} references. POCO stops at 10
	// (AbstractConfiguration::internalExpand); a little more is harmless.
	maxReferenceDepth = 16
	// zeroNodeID is POCO's system.nodeId when no Ethernet address is found.
	zeroNodeID = "000000000000"
)

// PropertyError is an error about one line of a properties file. Err wraps
// one of the sentinel errors of this package.
type PropertyError struct {
	File string // empty when the input was not a named file
	Line int    // 1-based line of the key (of its first character)
	Key  string // empty for a syntax error before the key is known
	Err  error
}

func (e *PropertyError) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	} else {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *PropertyError) Unwrap() error { return e.Err }

// Properties are the keys of a properties file with their values expanded.
// The zero value holds no keys. Properties are read-only once parsed, and
// safe for concurrent use.
type Properties struct {
	entries map[string]propertyEntry
}

type propertyEntry struct {
	value string
	line  int
}

// Get returns the expanded value of key, and whether the file sets it.
func (p *Properties) Get(key string) (string, bool) {
	e, ok := p.entries[key]
	return e.value, ok
}

// Line returns the line on which key is set (its last setting, which is the
// one in effect), or 0 when it is not set.
func (p *Properties) Line(key string) int {
	return p.entries[key].line
}

// Keys returns the keys of the file, sorted.
func (p *Properties) Keys() []string {
	keys := make([]string, 0, len(p.entries))
	for k := range p.entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ParseProperties reads a properties file and expands the ${name} references
// in its values. env looks up environment variables for ${system.env.NAME}
// and hostname answers ${system.nodeName} and ${system.hostName}; nil means
// os.LookupEnv and os.Hostname. ${system.nodeId} is the device's Ethernet
// address as POCO finds it. References resolve to keys of the file first,
// then to these system names; the value of a key is itself expanded, the value
// of an environment variable is taken literally. Errors are *PropertyError.
func ParseProperties(r io.Reader, env func(string) (string, bool), hostname func() (string, error)) (*Properties, error) {
	return parseProperties(r, sysLookup{env: env, hostname: hostname})
}

// sysLookup answers the ${system.*} names. Nil fields mean the real ones.
type sysLookup struct {
	env      func(string) (string, bool)
	hostname func() (string, error)
	nodeID   func() string
}

func parseProperties(r io.Reader, sys sysLookup) (*Properties, error) {
	if sys.env == nil {
		sys.env = os.LookupEnv
	}
	if sys.hostname == nil {
		sys.hostname = os.Hostname
	}
	if sys.nodeID == nil {
		sys.nodeID = hardwareNodeID
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPropertiesFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPropertiesFile {
		return nil, &PropertyError{Line: lineOf(data, maxPropertiesFile),
			Err: fmt.Errorf("file %w: more than %d bytes", ErrPropertiesTooLarge, maxPropertiesFile)}
	}
	raw, order, err := scanProperties(data)
	if err != nil {
		return nil, err
	}
	x := &expander{raw: raw, sys: sys, budget: maxExpandedTotal,
		done: make(map[string]expanded, len(raw)), busy: make(map[string]bool)}
	p := &Properties{entries: make(map[string]propertyEntry, len(raw))}
	// Expand in file order, so that the error reported for a broken file is
	// always the same one: the first key involved.
	for _, key := range order {
		v, err := x.expandKey(key)
		if err != nil {
			return nil, err
		}
		p.entries[key] = propertyEntry{value: v.value, line: raw[key].line}
	}
	return p, nil
}

// scanProperties splits data into keys and unescaped, trimmed, unexpanded
// values, following PropertyFileConfiguration::parseLine and readChar. order
// lists each key once, in the order of the lines in effect.
func scanProperties(data []byte) (map[string]propertyEntry, []string, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		// POCO would end the value at a NUL and read on as if a new line
		// began; a NUL is better taken for what it is: not a text file.
		return nil, nil, &PropertyError{Line: lineOf(data, i), Err: fmt.Errorf("%w: NUL byte", ErrPropertySyntax)}
	}
	entries := make(map[string]propertyEntry)
	line, i, n := 1, 0, len(data)
	var value []byte
	for i < n {
		c := data[i]
		if isPocoSpace(c) { // blanks, and empty lines
			i = skipLineBreak(data, i, &line)
			continue
		}
		start := line
		if c == '#' || c == '!' {
			for i < n && data[i] != '\n' && data[i] != '\r' {
				i++
			}
			continue
		}
		j := i
		for j < n && data[j] != '=' && data[j] != ':' && data[j] != '\n' && data[j] != '\r' {
			j++
		}
		key := string(bytes.TrimFunc(data[i:j], isPocoSpaceRune))
		i = j
		value = value[:0]
		if i < n && (data[i] == '=' || data[i] == ':') {
			i++
		chars:
			for i < n {
				c := data[i]
				switch c {
				case '\n', '\r':
					break chars // the line break is skipped as a blank
				case '\\':
					i++
					if i == n {
						break chars // a backslash at the very end is dropped, as in POCO
					}
					switch e := data[i]; e {
					case 't':
						value = append(value, '\t')
					case 'n':
						value = append(value, '\n')
					case 'r':
						value = append(value, '\r')
					case 'f':
						value = append(value, '\f')
					case '\n', '\r': // continuation: the next line joins, blanks and all
						i = skipLineBreak(data, i, &line)
						continue chars
					default: // \\, \=, \:, and any other \x, are x
						value = append(value, e)
					}
					i++
				default:
					value = append(value, c)
					i++
				}
			}
		}
		if key == "" {
			// POCO would set the key "": that is never what the writer meant.
			return nil, nil, &PropertyError{Line: start, Err: fmt.Errorf("%w: no key before the separator", ErrPropertySyntax)}
		}
		entries[key] = propertyEntry{value: string(bytes.TrimFunc(value, isPocoSpaceRune)), line: start}
	}
	order := make([]string, 0, len(entries))
	for k := range entries {
		order = append(order, k)
	}
	slices.SortFunc(order, func(a, b string) int { return entries[a].line - entries[b].line })
	return entries, order, nil
}

// skipLineBreak steps over data[i], a blank; over "\r\n", "\n" or "\r" it
// counts a line.
func skipLineBreak(data []byte, i int, line *int) int {
	switch data[i] {
	case '\n':
		*line++
	case '\r':
		*line++
		if i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
	}
	return i + 1
}

// lineOf returns the 1-based line of data[i].
func lineOf(data []byte, i int) int {
	line := 1
	for j := 0; j < i && j < len(data); j = skipLineBreak(data, j, &line) {
	}
	return line
}

// isPocoSpace is Poco::Ascii::isSpace, which parseLine and trim use.
func isPocoSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isPocoSpaceRune(r rune) bool { return r < 0x80 && isPocoSpace(byte(r)) }

// expander expands the values of one file, each key once.
type expander struct {
	raw    map[string]propertyEntry
	sys    sysLookup
	budget int                 // bytes of expanded values still allowed
	done   map[string]expanded // memo
	busy   map[string]bool     // keys being expanded, for cycle detection
	chain  []string            // the same keys, in order, for the message
}

type expanded struct {
	value string
	depth int // longest chain of ${key} references below this key, plus one
}

// expandKey returns the expanded value of a key of the file. Errors are
// reported against the key whose expansion failed first.
func (x *expander) expandKey(key string) (expanded, error) {
	if v, ok := x.done[key]; ok {
		return v, nil
	}
	e := x.raw[key]
	if x.busy[key] {
		var names []string
		for _, n := range append(slices.Clone(x.chain[slices.Index(x.chain, key):]), key) {
			names = append(names, "${"+n+"}")
		}
		return expanded{}, &PropertyError{Line: e.line, Key: key,
			Err: fmt.Errorf("%w: %s", ErrReferenceCycle, strings.Join(names, " -> "))}
	}
	if len(x.chain) >= maxReferenceDepth {
		// Found on the way down, before the depths below are known: this
		// keeps a long chain of keys from recursing deeply.
		top := x.chain[0]
		return expanded{}, x.tooDeep(top, x.raw[top])
	}
	x.busy[key] = true
	x.chain = append(x.chain, key)
	defer func() {
		delete(x.busy, key)
		x.chain = x.chain[:len(x.chain)-1]
	}()

	v, err := x.expandValue(key, e)
	if err != nil {
		return expanded{}, err
	}
	x.budget -= len(v.value)
	x.done[key] = v
	return v, nil
}

// expandValue does what AbstractConfiguration::uncheckedExpand does, except
// that an unterminated "${name" is left as written (POCO reads it as
// "${name}").
func (x *expander) expandValue(key string, e propertyEntry) (expanded, error) {
	s := e.value
	if !strings.Contains(s, "${") {
		if len(s) > x.budget {
			return expanded{}, x.tooLarge(key, e)
		}
		return expanded{value: s, depth: 1}, nil
	}
	var b strings.Builder
	depth := 1
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			break
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			break
		}
		b.WriteString(s[:i])
		name := s[i+2 : i+2+end]
		s = s[i+2+end+1:]

		var sub string
		if _, ok := x.raw[name]; ok {
			v, err := x.expandKey(name)
			if err != nil {
				return expanded{}, err
			}
			if v.depth+1 > maxReferenceDepth {
				return expanded{}, x.tooDeep(key, e)
			}
			depth = max(depth, v.depth+1)
			sub = v.value
		} else if v, ok, err := x.sys.lookup(name); err != nil {
			return expanded{}, &PropertyError{Line: e.line, Key: key, Err: fmt.Errorf("${%s}: %w", name, err)}
		} else if ok {
			sub = v
		} else {
			sub = "${" + name + "}"
		}
		if b.Len()+len(sub)+len(s) > x.budget {
			return expanded{}, x.tooLarge(key, e)
		}
		b.WriteString(sub)
	}
	b.WriteString(s)
	if b.Len() > x.budget {
		return expanded{}, x.tooLarge(key, e)
	}
	return expanded{value: b.String(), depth: depth}, nil
}

func (x *expander) tooDeep(key string, e propertyEntry) error {
	return &PropertyError{Line: e.line, Key: key,
		Err: fmt.Errorf("%w: more than %d levels", ErrReferenceDepth, maxReferenceDepth)}
}

func (x *expander) tooLarge(key string, e propertyEntry) error {
	return &PropertyError{Line: e.line, Key: key,
		Err: fmt.Errorf("expanded values %w: more than %d bytes in all", ErrPropertiesTooLarge, maxExpandedTotal)}
}

// lookup answers the names of POCO's SystemConfiguration that device files
// use. system.hostName is not POCO's, but an obvious alias of nodeName.
func (s sysLookup) lookup(name string) (string, bool, error) {
	switch name {
	case "system.nodeName", "system.hostName":
		h, err := s.hostname()
		if err != nil {
			return "", false, err
		}
		return h, true, nil
	case "system.nodeId":
		return s.nodeID(), true, nil
	}
	if env, ok := strings.CutPrefix(name, "system.env."); ok {
		v, ok := s.env(env)
		return v, ok, nil
	}
	return "", false, nil
}

// hardwareNodeID is POCO's system.nodeId on Linux (Environment_UNIX.cpp,
// nodeIdImpl, formatted by SystemConfiguration): the MAC address of eth0 from
// /sys/class/net, else that of the first interface with an IPv4 address and
// an Ethernet address, as 12 lower-case hex digits, or all zeros. The stock
// WebTunnelAgent.properties builds the device id from it, so it must match
// POCO's choice on the same device; on devices with several interfaces and
// no eth0 the order may differ, and an explicit device id is safer.
func hardwareNodeID() string {
	if b, err := os.ReadFile("/sys/class/net/eth0/address"); err == nil {
		if mac, err := net.ParseMAC(strings.TrimSpace(string(b))); err == nil && len(mac) == 6 {
			return hex.EncodeToString(mac)
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return zeroNodeID
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return hex.EncodeToString(ifi.HardwareAddr)
			}
		}
	}
	return zeroNodeID
}
