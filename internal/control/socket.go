package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// The control socket's wire: one JSON object each way, newline terminated.
//
//	request:  {"args":["user","add","alice"],"stdin":"<base64>"}\n
//	response: {"stdout":"…","stderr":"…","code":0}\n
//
// stdin is present only when the command reads stdin (user add or passwd
// with --password-stdin); it holds the first line the client read. A
// command that asks questions (user totp enable) is several requests, the
// client prompting between them: see totp.go.
const (
	socketName = "control.sock"

	// maxRequest bounds a request line: 1 MiB of stdin is 1.34 MiB of
	// base64, plus the arguments.
	maxRequest = 2 << 20
	// maxStdin bounds what Main reads from stdin to send along.
	maxStdin = 1 << 20
	// maxResponse bounds what the client reads back. The server is ours, but
	// a bound costs nothing; a device list of 100,000 devices fits.
	maxResponse = 64 << 20

	// connTimeout bounds one connection on the server: reading the request,
	// running the command and writing the answer. A command may ask for
	// longer (command.timeout).
	connTimeout = 30 * time.Second
	// clientMargin is how much longer the client waits than the server
	// lets the command run, so that the server's own limit is what a slow
	// command runs into.
	clientMargin = 5 * time.Second
	// dialTimeout bounds connecting to the socket, which on a live server
	// succeeds at once.
	dialTimeout = 2 * time.Second

	// maxUnixPath is the usable length of sun_path on Linux (108 bytes
	// with the terminating NUL).
	maxUnixPath = 107
)

type request struct {
	Args  []string `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"` // base64 in JSON
}

type response struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Code   int    `json:"code"`
}

// SocketPath is <dataDir>/control.sock.
func SocketPath(dataDir string) string {
	return filepath.Join(dataDir, socketName)
}

// Listen creates the control socket in dataDir, mode 0600 from the
// start, replacing a stale socket file that no server answers on. It fails
// if a server answers there, or if something other than a socket has the
// name. Closing the listener removes the file. It warns (logger, which may
// be nil) when dataDir is open to other users. Serve checks each
// connecting process's user besides.
func Listen(dataDir string, logger *slog.Logger) (net.Listener, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := SocketPath(dataDir)
	if len(path) > maxUnixPath {
		return nil, fmt.Errorf("listen on control socket %s: path longer than %d bytes; use a shorter data directory", path, maxUnixPath)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	warnOpenDataDir(dataDir, logger)
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	// Where listenPrivate cannot set the umask, bind(2) created the file
	// with the process's; narrow it at once. Elsewhere this changes
	// nothing.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	return ln, nil
}

// warnOpenDataDir logs a warning when the data directory is readable,
// writable or searchable by group or others. It warns rather than narrows
// the mode: the directory is the operator's (systemd's StateDirectory
// makes it 0755 unless StateDirectoryMode says otherwise, and sets it
// again at every start), and a group may be let in on purpose. The files
// in it are 0600 either way; what others could do is list them and, with
// write permission, replace them — the socket among them, where an
// administrator's command would then go to somebody else's listener.
func warnOpenDataDir(dir string, logger *slog.Logger) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	logger.Warn("data directory is open to other users: its files are theirs to list, and with write permission to replace; chmod 700 it (systemd: StateDirectoryMode=0700)",
		"dir", dir, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
}

// removeStale removes the socket file at path if no server answers on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%w: exists and is not a socket", fs.ErrExist)
	}
	if conn, err := net.DialTimeout("unix", path, dialTimeout); err == nil {
		conn.Close()
		return fmt.Errorf("%w: another reflector answers on it", fs.ErrExist)
	}
	return os.Remove(path)
}

// Serve answers commands on ln until ctx ends or ln is closed, then waits
// for the commands in flight and returns nil. Each connection carries one
// request and one response; a malformed request gets an error response.
// Transient accept errors (out of file descriptors) are logged and retried
// with backoff; any other accept error is returned. A nil logger discards.
func Serve(ctx context.Context, ln net.Listener, env Env, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !peerCheckSupported {
		logger.Info("control socket: this system cannot name a connecting process's user; the socket's mode 0600 alone keeps others out")
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !transient(err) {
				return fmt.Errorf("control socket: accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			logger.Warn("control socket: accept failed; retrying", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		wg.Go(func() {
			if err := checkPeer(conn); err != nil {
				refuse(ctx, conn, err, logger)
				return
			}
			serveConn(ctx, conn, env, logger)
		})
	}
}

// transient reports whether an accept error may go away by itself.
func transient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
		syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serveConn answers one request on conn.
func serveConn(ctx context.Context, conn net.Conn, env Env, logger *slog.Logger) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(connTimeout))

	// Shutdown interrupts a client still sending its request; a command
	// that has started runs to its end and answers, so a client is never
	// left unsure whether its change was made.
	interrupt := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	req, err := readRequest(conn)
	interrupt()

	var resp response
	switch {
	case errors.Is(err, io.EOF):
		return // connected and hung up: a liveness probe such as removeStale's
	case errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil:
		// Too slow, or shutting down: nobody is waiting for an answer
		// that could be written in time.
		logger.Debug("control socket: no request before deadline or shutdown", "err", err)
		return
	case err != nil:
		logger.Warn("control socket: bad request", "err", err)
		resp = response{Stderr: fmt.Sprintf("reflector: bad control request: %v\n", err), Code: exitFailure}
	default:
		var stdout, stderr bytes.Buffer
		run := runTimeout(req.Args)
		conn.SetDeadline(time.Now().Add(run))
		cctx, cancel := context.WithTimeout(ctx, run)
		resp.Code = Run(cctx, env, req.Args, bytes.NewReader(req.Stdin), &stdout, &stderr)
		cancel()
		resp.Stdout, resp.Stderr = stdout.String(), stderr.String()
		// The command words only: names and flags are not secret, but
		// nothing more is needed to follow what was done.
		logger.Info("control command", "command", commandWords(req.Args), "code", resp.Code)
	}
	if err := json.NewEncoder(conn).Encode(&resp); err != nil {
		logger.Warn("control socket: write response", "err", err)
	}
}

// refuse answers a connection from a process that may not run commands
// (checkPeer) and closes it. The socket's mode keeps other users out; this
// holds when a file or directory mode does not. The request is read first,
// within the same bounds as serveConn's, so that the client gets the
// answer rather than a broken pipe.
func refuse(ctx context.Context, conn net.Conn, err error, logger *slog.Logger) {
	defer conn.Close()
	logger.Warn("control socket: connection refused", "err", err)
	conn.SetDeadline(time.Now().Add(connTimeout))
	interrupt := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	readRequest(conn)
	interrupt()
	resp := response{Stderr: fmt.Sprintf("reflector: control socket: refused: %v\n", err), Code: exitFailure}
	json.NewEncoder(conn).Encode(&resp)
}

// readRequest reads and decodes one request line of at most maxRequest
// bytes. It returns io.EOF if the peer sent nothing at all.
func readRequest(r io.Reader) (request, error) {
	var req request
	br := bufio.NewReader(io.LimitReader(r, maxRequest+1))
	line, err := br.ReadBytes('\n')
	if len(line) > maxRequest {
		return req, fmt.Errorf("request longer than %d bytes", maxRequest)
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return req, err
	}
	// Unmarshal, unlike a Decoder, also refuses anything after the object.
	if err := json.Unmarshal(line, &req); err != nil {
		return req, fmt.Errorf("decode request: %w", err)
	}
	return req, nil
}

// checkPeer lets root and the server's own user in; anybody else gets an
// error that names them. Where the system cannot tell (peerCred), it lets
// everybody in.
func checkPeer(conn net.Conn) error {
	if !peerCheckSupported {
		return nil
	}
	uid, pid, err := peerCred(conn)
	if err != nil {
		return fmt.Errorf("cannot tell which user connected: %w", err)
	}
	self := uint32(os.Geteuid())
	if !peerAllowed(uid, self) {
		return fmt.Errorf("uid %d (pid %d) is neither root nor the server's user (uid %d)", uid, pid, self)
	}
	return nil
}

// peerAllowed reports whether a process of user uid may run commands on a
// server running as user self.
func peerAllowed(uid, self uint32) bool { return uid == 0 || uid == self }

// commandWords returns the words that name a command, for the log.
func commandWords(args []string) string {
	if cmd, _, ok := lookup(args); ok {
		return cmd.words
	}
	return "(unknown)"
}

// Main is what `reflector <command>` calls. If a server answers on the
// control socket in dataDir, the command runs there; its stdin, when the
// command reads one (user add --password-stdin), is read here first — one
// line of at most 1 MiB — and sent along. Otherwise Main opens the store in
// dataDir itself and runs the command with no hub; offline (which may be
// nil) supplies the reflector URL and certificate fingerprint for that case.
// A command that asks questions (user totp enable) runs as a dialogue of
// requests, with the prompts on this terminal between them, either way.
// It returns the exit code: 0 ok, 1 failure, 2 usage.
func Main(ctx context.Context, dataDir string, args []string, stdin io.Reader, stdout, stderr io.Writer, offline func() (url, fingerprint string)) int {
	cmd, rest, ok := lookup(args)
	if !ok {
		// Usage needs neither a server nor a store.
		return Run(ctx, Env{}, args, nil, stdout, stderr)
	}
	var input []byte
	if stdin == nil {
		stdin = bytes.NewReader(nil)
	}
	if cmd.stdin != nil && cmd.stdin(rest) {
		// Read before dialling: a password typed at a terminal must not
		// race the server's connection deadline.
		line, err := readLine(stdin, maxStdin)
		if err != nil {
			fmt.Fprintf(stderr, "reflector: read stdin: %v\n", err)
			return exitFailure
		}
		input = []byte(line + "\n")
	}

	s, code, ok := openSession(ctx, dataDir, stdout, stderr, offline)
	if !ok {
		return code
	}
	if cmd.dialogue != nil {
		code = cmd.dialogue(s, cmd, rest, stdin)
	} else {
		code = s.do(args, input)
	}
	return s.close(code)
}

// session carries the requests of one Main call to where they run: the
// server answering on the control socket, or the store Main opened when
// none answers. Which of the two is decided once, by the first dial, so a
// dialogue's requests all go the same way.
type session struct {
	ctx            context.Context
	path           string    // the control socket
	conn           net.Conn  // dialled for the first request; nil once used
	dialed         time.Time // when conn was dialled
	local          *Env      // on the store opened here; nil when a server answers
	stdout, stderr io.Writer
}

// openSession dials the control socket in dataDir, or opens the store there
// when nothing answers. On failure it has reported why and returns the exit
// code.
func openSession(ctx context.Context, dataDir string, stdout, stderr io.Writer, offline func() (string, string)) (*session, int, bool) {
	s := &session{ctx: ctx, path: SocketPath(dataDir), stdout: stdout, stderr: stderr}
	conn, dialErr := (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "unix", s.path)
	if dialErr == nil {
		s.conn, s.dialed = conn, time.Now()
		return s, exitOK, true
	}
	st, err := store.Open(dataDir)
	if errors.Is(err, store.ErrInUse) {
		fmt.Fprintf(stderr, "reflector: a reflector is running on this data directory but its control socket does not answer (%v)\n", dialErr)
		return nil, exitFailure, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "reflector: %v\n", err)
		return nil, exitFailure, false
	}
	cfg := ops.Config{Store: st}
	if offline != nil {
		cfg.ReflectorURL, cfg.Fingerprint = offline()
	}
	svc, err := ops.New(cfg)
	if err != nil {
		st.Close()
		fmt.Fprintf(stderr, "reflector: %v\n", err)
		return nil, exitFailure, false
	}
	s.local = &Env{Ops: svc}
	return s, exitOK, true
}

// do runs one command (args with its words) with input as its stdin and
// returns its exit code.
func (s *session) do(args []string, input []byte) int {
	if s.local != nil {
		return Run(s.ctx, *s.local, args, bytes.NewReader(input), s.stdout, s.stderr)
	}
	conn := s.conn
	s.conn = nil
	if conn != nil && time.Since(s.dialed) > dialTimeout {
		// Dialled before a prompt that took a while: the server drops a
		// connection that sends nothing for connTimeout, so start afresh.
		conn.Close()
		conn = nil
	}
	if conn == nil {
		var err error
		conn, err = (&net.Dialer{Timeout: dialTimeout}).DialContext(s.ctx, "unix", s.path)
		if err != nil {
			// The server answered a moment ago: do not fall back to the
			// store, which it holds.
			fmt.Fprintf(s.stderr, "reflector: control socket %s: %v\n", s.path, err)
			return exitFailure
		}
	}
	return remote(s.ctx, conn, request{Args: args, Stdin: input}, s.stdout, s.stderr)
}

// close releases what the session holds and returns code, or 1 if closing
// the store failed after a successful command.
func (s *session) close(code int) int {
	if s.conn != nil {
		s.conn.Close()
	}
	if s.local == nil {
		return code
	}
	if err := s.local.Ops.Store().Close(); err != nil {
		fmt.Fprintf(s.stderr, "reflector: %v\n", err)
		if code == exitOK {
			code = exitFailure
		}
	}
	return code
}

// remote runs req on the server at the other end of conn. It does not fall
// back to the store on failure: the server may have made the change already.
func remote(ctx context.Context, conn net.Conn, req request, stdout, stderr io.Writer) int {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(runTimeout(req.Args) + clientMargin))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	fail := func(err error) int {
		fmt.Fprintf(stderr, "reflector: control socket %s: %v\n", conn.RemoteAddr(), err)
		return exitFailure
	}
	if err := json.NewEncoder(conn).Encode(&req); err != nil {
		return fail(fmt.Errorf("send command: %w", err))
	}
	var resp response
	dec := json.NewDecoder(io.LimitReader(conn, maxResponse))
	if err := dec.Decode(&resp); err != nil {
		return fail(fmt.Errorf("read answer: %w", err))
	}
	io.WriteString(stdout, resp.Stdout)
	io.WriteString(stderr, resp.Stderr)
	if resp.Code < 0 || resp.Code > 125 {
		return exitFailure
	}
	return resp.Code
}
