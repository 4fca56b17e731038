package control

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// deviceAdd: device add ID [--group G]... [--ports 80,22] [--name TEXT] [--http-port N] [--http-tls] [--secret-stdin]
func deviceAdd(c *call, args []string) int {
	fs := c.flags()
	var groups listFlag
	fs.Var(&groups, "group", "a group of the device; repeat or separate with commas")
	var ports portsFlag
	fs.Var(&ports, "ports", "device ports users may reach, e.g. 80,22 (default: whatever the agent allows)")
	name := fs.String("name", "", "display name, e.g. \"Pump 17\"")
	var httpPort portFlag
	fs.Var(&httpPort, "http-port", "the device's web port for browsing (default: the agent's httpPort property)")
	httpTLS := fs.Bool("http-tls", false, "the device's web port speaks HTTPS (default: as the agent's httpsEnable property says)")
	fromStdin := fs.Bool("secret-stdin", false, "adopt the secret the device already has (a WebTunnelAgent's password), read from the first line of stdin, instead of generating one")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]

	n := ops.NewDevice{
		ID:       id,
		Name:     *name,
		Groups:   groups,
		Ports:    ports,
		HTTPPort: httpPort.port,
		HTTPTLS:  *httpTLS,
	}
	if *fromStdin {
		line, err := readLine(c.stdin, maxStdin)
		if err != nil {
			return c.fail("add device "+id, fmt.Errorf("read secret from stdin: %w", err))
		}
		if line == "" {
			return c.fail("add device "+id, errEmptySecret)
		}
		n.Secret = line
	}
	added, err := c.svc.AddDevice(c.ctx, c.as, n)
	if err != nil {
		return c.failGroups(err, groups)
	}
	secret := added.Secret

	if *fromStdin {
		// The secret is the device's own: it is not repeated here, where it
		// would land in terminal scrollback and the server's answer.
		fmt.Fprintf(c.stdout, "device %s added with the secret read from stdin (not shown)\n", id)
		c.printAgentLine("a WebTunnelAgent keeps its password (set its webtunnel.reflectorURI to this reflector); our agent runs with:",
			id, secretPlaceholder, ports, httpPort.port)
	} else {
		fmt.Fprintf(c.stdout, "device %s added; its secret (shown once): %s\n", id, secret)
		c.printAgentLine("run the agent on the device with:", id, ops.ShellQuoteAlways(secret), ports, httpPort.port)
	}
	c.warnHTTPPort(id, ports, httpPort.port)
	return exitOK
}

// errEmptySecret is returned for --secret-stdin with nothing on the first
// line.
var errEmptySecret = errors.New("empty secret on stdin")

// secretPlaceholder stands for an adopted secret in the agent line, which
// must not show it.
const secretPlaceholder = "'<the device's password>'"

// wantsSecretStdin reports whether args (after "device add") ask for the
// secret on stdin (--secret-stdin).
func wantsSecretStdin(args []string) bool { return boolFlagSet(args, "secret-stdin") }

// printAgentLine prints the agent command line for a device, after
// heading. secretWord is the secret as a shell word (or a placeholder).
func (c *call) printAgentLine(heading, id, secretWord string, ports []uint16, httpPort uint16) {
	w := c.stdout
	fmt.Fprintln(w, heading)
	fmt.Fprintf(w, "  %s\n", c.svc.AgentLine(id, secretWord, ports, httpPort))
	fmt.Fprintln(w, "The agent's --ports is its own allow-list of device-local ports; list every port users should reach.")
}

// warnHTTPPort notes an HTTP port the device's own ports refuse: the proxy
// enforces the record's ports, so browsing would be refused with 403 —
// almost certainly not what was meant.
func (c *call) warnHTTPPort(id string, ports []uint16, httpPort uint16) {
	if httpPort != 0 && len(ports) > 0 && !slices.Contains(ports, httpPort) {
		fmt.Fprintf(c.stderr, "reflector: note: --http-port %d is not among --ports %s, so browsing %s will be refused\n",
			httpPort, tunnel.FormatPorts(ports), id)
	}
}

// deviceSet: device set ID [--group G]... [--no-groups] [--ports 80,22] [--no-ports] [--name TEXT] [--http-port N] [--http-tls|--no-http-tls]
func deviceSet(c *call, args []string) int {
	fs := c.flags()
	var groups listFlag
	fs.Var(&groups, "group", "a group of the device, replacing the current ones; repeat or separate with commas")
	noGroups := fs.Bool("no-groups", false, "remove the device from all groups")
	var ports portsFlag
	fs.Var(&ports, "ports", "device ports users may reach, replacing the current ones, e.g. 80,22")
	noPorts := fs.Bool("no-ports", false, "let users reach whatever ports the agent allows")
	name := fs.String("name", "", "display name; '' removes it")
	httpPort := portFlag{zeroOK: true}
	fs.Var(&httpPort, "http-port", "the device's web port for browsing; 0 for the agent's httpPort property")
	httpTLS := fs.Bool("http-tls", false, "the device's web port speaks HTTPS (its certificate is not verified unless the reflector has --device-ca)")
	noHTTPTLS := fs.Bool("no-http-tls", false, "the web port set with --http-port speaks plain HTTP; the agent's port speaks what the agent declares")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id, set := pos[0], given(fs)
	switch {
	case set["group"] && *noGroups:
		return c.usageError(fs, "--group and --no-groups exclude each other")
	case set["group"] && len(groups) == 0:
		return c.usageError(fs, "--group needs a group name; --no-groups removes all")
	case set["ports"] && *noPorts:
		return c.usageError(fs, "--ports and --no-ports exclude each other")
	case set["http-tls"] && set["no-http-tls"]:
		return c.usageError(fs, "--http-tls and --no-http-tls exclude each other")
	case !set["group"] && !*noGroups && !set["ports"] && !*noPorts && !set["name"] && !set["http-port"] &&
		!set["http-tls"] && !set["no-http-tls"]:
		return c.usageError(fs, "nothing to change: give --group, --no-groups, --ports, --no-ports, --name, --http-port, --http-tls or --no-http-tls")
	}

	var u store.DeviceUpdate
	if set["group"] || *noGroups {
		g := []string(groups)
		u.Groups = &g
	}
	if set["ports"] || *noPorts {
		p := []uint16(ports)
		u.Ports = &p
	}
	if set["name"] {
		u.Name = name
	}
	if set["http-port"] {
		u.HTTPPort = &httpPort.port
	}
	switch {
	case set["http-tls"]:
		u.HTTPTLS = httpTLS // --http-tls=false is --no-http-tls
	case set["no-http-tls"]:
		off := !*noHTTPTLS
		u.HTTPTLS = &off
	}
	d, desc, err := c.svc.UpdateDevice(c.ctx, c.as, id, u)
	if err != nil {
		return c.fail("", err)
	}

	fmt.Fprintf(c.stdout, "device %s updated (%s)\n", id, desc)
	c.warnHTTPPort(id, d.Ports, d.HTTPPort)
	return exitOK
}

// deviceRotate: device rotate-secret ID
func deviceRotate(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	rotated, err := c.svc.RotateDeviceSecret(c.ctx, c.as, id)
	if err != nil {
		return c.fail("", err)
	}

	w := c.stdout
	fmt.Fprintf(w, "device %s has a new secret (shown once): %s\n", id, rotated.Secret)
	if rotated.WasOnline {
		fmt.Fprintln(w, "the old secret no longer works; the connected agent was dropped")
	} else {
		fmt.Fprintln(w, "the old secret no longer works")
	}
	d := rotated.Device
	c.printAgentLine("restart the agent on the device with:", id, ops.ShellQuoteAlways(rotated.Secret), d.Ports, d.HTTPPort)
	return exitOK
}

// deviceDisable: device disable ID
func deviceDisable(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	closed, err := c.svc.SetDeviceDisabled(c.ctx, c.as, id, true)
	if err != nil {
		return c.fail("", err)
	}
	if closed {
		fmt.Fprintf(c.stdout, "device %s disabled; its tunnel was closed\n", id)
	} else {
		fmt.Fprintf(c.stdout, "device %s disabled\n", id)
	}
	return exitOK
}

// deviceEnable: device enable ID
func deviceEnable(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	if _, err := c.svc.SetDeviceDisabled(c.ctx, c.as, id, false); err != nil {
		return c.fail("", err)
	}
	fmt.Fprintf(c.stdout, "device %s enabled\n", id)
	return exitOK
}

// deviceList: device list
func deviceList(c *call, args []string) int {
	fs := c.flags()
	if _, code, ok := c.parse(fs, args, 0); !ok {
		return code
	}
	// Every device, in one read: a page of ops.Devices is for callers
	// whose reach is narrowed, and the control socket's is not.
	devices, err := c.svc.Store().Devices()
	if err != nil {
		return c.fail("", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tGROUPS\tPORTS\tSTATUS")
	for _, d := range devices {
		ports := "agent's"
		if len(d.Ports) > 0 {
			ports = tunnel.FormatPorts(d.Ports)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, orDash(cell(d.Name)),
			orDash(strings.Join(d.Groups, ",")), ports, status(c.svc.WithStatus(d), now))
	}
	if err := tw.Flush(); err != nil {
		return c.fail("list devices", err)
	}
	return exitOK
}

// status describes whether d is connected: "online since 15:04:05 from
// 192.0.2.7:50123 (webtunnel), agent ports 22,80", "offline, last seen 2006-01-02
// 15:04", "offline", or "disabled" (with when it was last seen).
func status(d ops.Device, now time.Time) string {
	if d.Disabled {
		if d.LastSeen.IsZero() {
			return "disabled"
		}
		return "disabled, last seen " + d.LastSeen.Local().Format("2006-01-02 15:04")
	}
	if st := d.Tunnel; d.Online {
		s := fmt.Sprintf("online since %s from %s (%s)", clock(st.ConnectedSince, now), orDash(st.RemoteAddr), st.Kind)
		if len(st.Ports) > 0 {
			s += ", agent ports " + tunnel.FormatPorts(st.Ports)
		}
		return s
	}
	if d.LastSeen.IsZero() {
		return "offline"
	}
	return "offline, last seen " + d.LastSeen.Local().Format("2006-01-02 15:04")
}

// clock formats t as 15:04:05 if it is today, with the date otherwise.
func clock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// deviceRemove: device rm ID
func deviceRemove(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	closed, err := c.svc.RemoveDevice(c.ctx, c.as, id)
	if err != nil {
		return c.fail("", err)
	}
	if closed {
		fmt.Fprintf(c.stdout, "device %s removed; its tunnel was closed\n", id)
	} else {
		fmt.Fprintf(c.stdout, "device %s removed\n", id)
	}
	return exitOK
}

// deviceResetHostKey: device reset-host-key ID
func deviceResetHostKey(c *call, args []string) int {
	fs := c.flags()
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	id := pos[0]
	had, err := c.svc.ResetHostKey(c.ctx, c.as, id)
	if err != nil {
		return c.fail("", err)
	}
	if had {
		fmt.Fprintf(c.stdout, "device %s: SSH host key forgotten; the next browser SSH session trusts the key it shows\n", id)
	} else {
		fmt.Fprintf(c.stdout, "device %s: no SSH host key was kept\n", id)
	}
	return exitOK
}

// cell makes free text safe for one tabwriter cell: a tab would start a new
// column. (The store already refuses control characters in device names;
// this keeps the table straight if that ever changes.)
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// Limits of device import. The file travels to a running server as the
// stdin of one control request, which carries at most maxStdin; a bigger
// fleet is imported as several files, each whole or not at all. The count
// stays below the audit queue's bound (one event per device).
const (
	maxImportBytes   = maxStdin
	maxImportDevices = 50_000
)

// importHeader is the optional first line of an import file.
var importHeader = []string{"id", "password", "group", "name"}

// importLine is a parsed line of an import file.
type importLine struct {
	line int
	dev  store.DeviceImport
}

// lineProblem is why a line of an import file is refused. msg never holds
// the line's password.
type lineProblem struct {
	line int
	msg  string
}

// deviceImport: device import FILE [--dry-run]
//
// FILE "-" is stdin. Main runs the command as deviceImportDialogue, which
// reads FILE on the client, with the permissions of whoever runs it, and
// sends it as stdin; a path reaches Run only when Run is called directly
// (or a request is written to the socket by hand).
func deviceImport(c *call, args []string) int {
	fs := c.flags()
	dryRun := fs.Bool("dry-run", false, "check the file and report every bad line; import nothing")
	pos, code, ok := c.parse(fs, args, 1)
	if !ok {
		return code
	}
	data, err := readImport(pos[0], c.stdin)
	if err != nil {
		return c.fail("import devices", err)
	}
	lines, problems, err := parseImport(data)
	if err != nil {
		return c.fail("import devices", err)
	}
	if len(lines) == 0 && len(problems) == 0 {
		return c.fail("import devices", errors.New("no devices in the file"))
	}

	ds := make([]store.DeviceImport, len(lines))
	for i, l := range lines {
		ds[i] = l.dev
	}
	err = c.svc.ImportDevices(c.ctx, c.as, ds, len(problems) > 0 || *dryRun)
	noGroup := false
	if err != nil {
		refused := importErrors(err)
		if len(refused) == 0 {
			return c.fail("", err) // the database, not the file
		}
		for _, ie := range refused {
			problems = append(problems, lineProblem{line: lines[ie.Index].line, msg: ie.Err.Error()})
			noGroup = noGroup || errors.Is(ie.Err, store.ErrNotFound)
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b lineProblem) int { return a.line - b.line })
		for _, p := range problems {
			fmt.Fprintf(c.stderr, "reflector: import devices: line %d: %s\n", p.line, p.msg)
		}
		fmt.Fprintf(c.stderr, "reflector: import devices: %s refused; nothing imported\n", countOf(len(problems), "line"))
		if noGroup {
			fmt.Fprintln(c.stderr, "reflector: groups must exist first: reflector group add NAME")
		}
		return exitFailure
	}
	if *dryRun {
		fmt.Fprintf(c.stdout, "%s would be imported; nothing changed\n", countOf(len(ds), "device"))
		return exitOK
	}
	fmt.Fprintf(c.stdout, "imported %s\n", countOf(len(ds), "device"))
	return exitOK
}

// deviceImportDialogue is how Main runs "device import": it reads the file
// here, as the user running the command, and sends its bytes as stdin with
// "-" for the path, so a running server never opens a path on a client's
// behalf (and a relative path means the client's directory). Arguments the
// command would refuse go to it unread, for it to report.
func deviceImportDialogue(s *session, cmd *command, args []string, stdin io.Reader) int {
	words := strings.Fields(cmd.words)
	var dryRun bool
	path, ok := parseQuietly(args, func(fs *flag.FlagSet) {
		fs.BoolVar(&dryRun, "dry-run", false, "")
	})
	if !ok {
		return s.do(append(words, args...), nil)
	}
	data, err := readImport(path, stdin)
	if err != nil {
		fmt.Fprintf(s.stderr, "reflector: import devices: %v\n", err)
		return exitFailure
	}
	req := slices.Clone(words)
	if dryRun {
		req = append(req, "--dry-run")
	}
	return s.do(append(req, "-"), data)
}

// readImport reads an import file of at most maxImportBytes from path, or
// from stdin for "-".
func readImport(path string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", importName(path), err)
	}
	if len(data) > maxImportBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes: split it into several files (each is imported whole or not at all)",
			importName(path), maxImportBytes)
	}
	return data, nil
}

func importName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// parseImport parses an import file: CSV lines id,password,group[,name],
// with # comments, blank lines and an optional header line
// "id,password,group,name". group is empty for none or one group name.
// It returns the lines that parsed and a problem for every other; err is
// set only when the file as a whole is refused (too many devices).
// Duplicate ids are refused here, where lines are known; the store checks
// everything else.
func parseImport(data []byte) (lines []importLine, problems []lineProblem, err error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1        // 3 or 4, checked below with the line number
	first := make(map[string]int) // id → line
	header := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			// The reader carries on with the next line. pe.Err says what
			// is wrong without quoting the field.
			problems = append(problems, lineProblem{line: pe.StartLine, msg: pe.Err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		line, _ := r.FieldPos(0)
		if header {
			header = false
			if isImportHeader(rec) {
				continue
			}
		}
		if len(lines)+len(problems) >= maxImportDevices {
			return nil, nil, fmt.Errorf("more than %d devices: split the file (each is imported whole or not at all)", maxImportDevices)
		}
		if len(rec) != 3 && len(rec) != 4 {
			problems = append(problems, lineProblem{line, fmt.Sprintf("%d fields, want 3 or 4: id,password,group[,name]", len(rec))})
			continue
		}
		id := strings.TrimSpace(rec[0])
		d := store.DeviceImport{Device: store.Device{ID: id}, Secret: rec[1]}
		if g := strings.TrimSpace(rec[2]); g != "" {
			d.Device.Groups = []string{g}
		}
		if len(rec) == 4 {
			d.Device.Name = strings.TrimSpace(rec[3])
		}
		if d.Secret == "" {
			problems = append(problems, lineProblem{line, "empty password"})
			continue
		}
		if prev, dup := first[id]; dup && id != "" {
			problems = append(problems, lineProblem{line, fmt.Sprintf("device %q is on line %d already", id, prev)})
			continue
		}
		first[id] = line
		lines = append(lines, importLine{line: line, dev: d})
	}
	return lines, problems, nil
}

// isImportHeader reports whether rec is the header line, with or without
// the name column.
func isImportHeader(rec []string) bool {
	if len(rec) != 3 && len(rec) != 4 {
		return false
	}
	for i, f := range rec {
		if !strings.EqualFold(strings.TrimSpace(f), importHeader[i]) {
			return false
		}
	}
	return true
}

// importErrors returns the *store.ImportError values in the tree of err,
// in order.
func importErrors(err error) []*store.ImportError {
	var out []*store.ImportError
	var walk func(error)
	walk = func(err error) {
		if ie, ok := err.(*store.ImportError); ok {
			out = append(out, ie)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// countOf formats a count for a message: "1 device", "2 devices".
func countOf(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
