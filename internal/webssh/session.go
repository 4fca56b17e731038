package webssh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/ssh"

	"github.com/reflector-dev/reflector/store"
)

// writeTimeout bounds every write to the page: a page that stops reading
// ends its session rather than holding the shell's output forever.
const writeTimeout = 10 * time.Second

// Errors of a session, for its log line; the page gets a message of its
// own (reflectorMessage).
var (
	errHostKeyChanged = errors.New("the device's SSH host key has changed")
	errPageGone       = errors.New("the page closed its WebSocket")
)

// session is one page's SSH session. run owns it; the reader goroutine
// (read) and the SSH library's goroutines (host key check, prompts, the
// shell's output) share the fields under their comments.
type session struct {
	srv    *Server
	ws     *websocket.Conn
	cred   store.Credential
	client netip.Addr
	device string
	port   uint16
	log    *slog.Logger

	// Writes to ws, from run, the prompts and the output copiers.
	wmu      sync.Mutex
	finished bool // the final message (exit or error) has been sent; under wmu

	// Between the reader and the prompts.
	answers    chan []string // the page's answers to the open prompt (capacity 1)
	promptOpen atomic.Bool   // a prompt was sent and not answered yet
	done       chan struct{} // closed when the reader has ended: the page went, or broke the protocol

	// Under mu: the shell once it runs, and the terminal's size.
	mu         sync.Mutex
	sess       *ssh.Session
	stdin      interface{ Write([]byte) (int, error) }
	cols, rows int
	keyOK      bool       // the host key was the one kept, or trusted now
	keyChanged *keyChange // the host key differed from the one kept
}

// keyChange is a host key refused because another is kept.
type keyChange struct{ keyType, expected, got string }

// run runs the session: the page's "auth", the stream, the SSH handshake
// (host key, login, prompts), the shell, until it ends.
func (ss *session) run(ctx context.Context) {
	defer ss.ws.Close()
	// The page logs in within LoginTimeout, or is dropped.
	ss.ws.SetReadDeadline(time.Now().Add(ss.srv.cfg.LoginTimeout))
	unblock := context.AfterFunc(ctx, func() { ss.ws.NetConn().Close() }) // Close must not wait for the page
	mt, data, err := ss.ws.ReadMessage()
	unblock()
	if err != nil {
		return // the page went before logging in
	}
	var auth pageMessage
	if mt != websocket.TextMessage {
		err = fmt.Errorf("%w: the first message must be \"auth\"", errProtocol)
	} else if auth, err = parsePageMessage(data); err == nil && auth.Type != typeAuth {
		err = fmt.Errorf("%w: the first message must be \"auth\"", errProtocol)
	}
	if err != nil {
		ss.finish(reflectorMessage{Type: typeError, Code: codeProtocol, Message: err.Error()})
		return
	}
	ss.ws.SetReadDeadline(time.Time{})
	ss.cols, ss.rows = auth.Cols, auth.Rows
	go ss.read()

	login, endLogin := context.WithTimeout(ctx, ss.srv.cfg.LoginTimeout)
	defer endLogin()
	go func() { // the page going ends the login too
		select {
		case <-ss.done:
			endLogin()
		case <-login.Done():
		}
	}()
	stream, err := ss.srv.cfg.Open(login, ss.cred, ss.client, ss.device, ss.port)
	if err != nil {
		ss.log.Info("web ssh: no stream", "err", err)
		ss.finish(reflectorMessage{Type: typeError, Code: codeUnreachable,
			Message: fmt.Sprintf("Cannot reach the SSH server of %s on port %d: %v", ss.device, ss.port, err)})
		return
	}
	defer stream.Close() // audits the stream (proxy.OpenStream)
	// Until the shell runs, the end of the login (timeout, page gone,
	// reflector closing) aborts the handshake by closing the stream.
	abort := context.AfterFunc(login, func() { stream.Close() })

	cfg := &ssh.ClientConfig{
		User:            auth.User,
		HostKeyCallback: ss.checkHostKey,
		// The version is the SSH server's to log; it says who connects.
		ClientVersion: "SSH-2.0-reflector-webssh",
	}
	if auth.Password != "" {
		cfg.Auth = append(cfg.Auth, ssh.Password(auth.Password))
	}
	cfg.Auth = append(cfg.Auth, ssh.KeyboardInteractive(ss.challenge(login, auth.Password)))
	conn, chans, reqs, err := ssh.NewClientConn(stream, net.JoinHostPort(ss.device, strconv.Itoa(int(ss.port))), cfg)
	if err != nil {
		abort()
		ss.handshakeFailed(ctx, login, auth.User, err)
		return
	}
	client := ssh.NewClient(conn, chans, reqs)
	defer client.Close()
	sess, err := ss.startShell(client)
	if !abort() {
		err = errors.Join(err, login.Err()) // the login ended as the shell started
	}
	if err != nil {
		ss.log.Info("web ssh: no shell", "err", err)
		ss.finish(reflectorMessage{Type: typeError, Code: codeSSH, Message: "The device's SSH server did not start a shell: " + err.Error()})
		return
	}
	ss.log.Info("web ssh: shell started", "ssh_user", auth.User)
	ss.send(reflectorMessage{Type: typeReady})
	go ss.ping()

	exited := make(chan error, 1)
	go func() { exited <- sess.Wait() }()
	select {
	case err := <-exited:
		ss.exited(err)
		return
	case <-ss.done: // the page went, or broke the protocol (answered by read)
		ss.log.Info("web ssh: page closed")
	case <-ctx.Done():
		ss.finish(reflectorMessage{Type: typeError, Code: codeClosed, Message: "The reflector is shutting down."})
	}
	client.Close()
	stream.Close()
	// The session's copiers end with the connection; Wait returns then.
	select {
	case <-exited:
	case <-time.After(writeTimeout):
	}
}

// startShell asks for a pty of the page's size (xterm-256color) and a
// shell, with the shell's output going to the page.
func (ss *session) startShell(client *ssh.Client) (*ssh.Session, error) {
	sess, err := client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open a session: %w", err)
	}
	ss.mu.Lock()
	cols, rows := ss.cols, ss.rows
	ss.mu.Unlock()
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 115200, ssh.TTY_OP_OSPEED: 115200}
	if err := sess.RequestPty("xterm-256color", rows, cols, modes); err != nil {
		return nil, fmt.Errorf("request a pty: %w", err)
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	out := pageWriter{ss}
	sess.Stdout, sess.Stderr = out, out
	if err := sess.Shell(); err != nil {
		return nil, fmt.Errorf("start a shell: %w", err)
	}
	ss.mu.Lock()
	ss.sess, ss.stdin = sess, stdin
	resized := ss.cols != cols || ss.rows != rows
	cols, rows = ss.cols, ss.rows
	ss.mu.Unlock()
	if resized { // the page resized while the shell started
		sess.WindowChange(rows, cols)
	}
	return sess, nil
}

// handshakeFailed tells the page why the SSH handshake failed.
func (ss *session) handshakeFailed(ctx, login context.Context, user string, err error) {
	ss.mu.Lock()
	keyOK, changed := ss.keyOK, ss.keyChanged
	ss.mu.Unlock()
	ss.log.Info("web ssh: handshake failed", "ssh_user", user, "err", err)
	m := reflectorMessage{Type: typeError}
	switch {
	case changed != nil:
		m.Code, m.KeyType, m.Expected, m.Fingerprint = codeHostKeyChanged, changed.keyType, changed.expected, changed.got
		m.Message = fmt.Sprintf("Refused: the SSH host key of %s has changed. The reflector trusts %s; the device now shows %s %s. "+
			"This can be an attack, or the device was reinstalled; nothing was sent. An administrator can reset the host key on the device's page.",
			ss.device, changed.expected, changed.keyType, changed.got)
	case isDone(ss.done):
		return // the page went
	case ctx.Err() != nil:
		m.Code, m.Message = codeClosed, "The reflector is shutting down."
	case errors.Is(login.Err(), context.DeadlineExceeded):
		m.Code, m.Message = codeTimeout, "The login took too long."
	case keyOK:
		m.Code, m.Message = codeAuth, fmt.Sprintf("The device's SSH server refused the login of %q: wrong user name or password?", user)
	default:
		m.Code, m.Message = codeSSH, "The SSH handshake with the device failed: "+err.Error()
	}
	ss.finish(m)
}

// exited tells the page how the shell ended.
func (ss *session) exited(err error) {
	m := reflectorMessage{Type: typeExit}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		zero := 0
		m.ExitStatus, m.Message = &zero, "The shell exited."
	case errors.As(err, &ee):
		status := ee.ExitStatus()
		m.ExitStatus, m.Message = &status, fmt.Sprintf("The shell exited with status %d.", status)
		if ee.Signal() != "" {
			m.Message = fmt.Sprintf("The shell was ended by signal %s.", ee.Signal())
		}
	default:
		// The stream ended under the session: the device or its agent went,
		// or the proxy ended the stream (access revoked, an administrator
		// cut it).
		m.Message = "The connection to the device ended: the device went away, or your access was revoked or cut by an administrator."
	}
	ss.log.Info("web ssh: session ended", "err", err)
	ss.finish(m)
}

// checkHostKey is the SSH client's host key check: trust on first use,
// then only the key kept.
func (ss *session) checkHostKey(_ string, _ net.Addr, key ssh.PublicKey) error {
	shown := key.Marshal()
	kept, first, err := ss.srv.cfg.HostKeys.SetHostKey(ss.device, shown)
	if err != nil {
		return fmt.Errorf("keep the host key: %w", err)
	}
	fp := ssh.FingerprintSHA256(key)
	ev := store.AuditEvent{Kind: store.AuditHostKey, User: ss.cred.User.Name, Token: ss.cred.TokenID, Device: ss.device, Port: ss.port, Client: ss.client.String()}
	switch {
	case first:
		ev.OK, ev.Reason = true, "trusted on first use: "+key.Type()+" "+fp
		ss.srv.cfg.Audit(ev)
		ss.send(reflectorMessage{Type: typeHostKey, Status: "new", KeyType: key.Type(), Fingerprint: fp})
	case bytes.Equal(kept.Key, shown):
		ss.send(reflectorMessage{Type: typeHostKey, Status: "known", KeyType: key.Type(), Fingerprint: fp})
	default:
		c := &keyChange{keyType: key.Type(), expected: Fingerprint(kept.Key), got: fp}
		ss.mu.Lock()
		ss.keyChanged = c
		ss.mu.Unlock()
		ev.Reason = "refused: changed host key: kept " + c.expected + ", shown " + key.Type() + " " + fp
		ss.srv.cfg.Audit(ev)
		return errHostKeyChanged
	}
	ss.mu.Lock()
	ss.keyOK = true
	ss.mu.Unlock()
	return nil
}

// challenge answers the SSH server's keyboard-interactive rounds by asking
// the page. A lone hidden question about a password (PAM's "Password: ")
// is answered once with the password of the login form, so that the user
// does not type it twice.
func (ss *session) challenge(login context.Context, password string) ssh.KeyboardInteractiveChallenge {
	passwordUsed := password == ""
	return func(name, instruction string, questions []string, echos []bool) ([]string, error) {
		if len(questions) == 0 {
			return nil, nil // an information round: nothing to answer
		}
		if !passwordUsed && len(questions) == 1 && !echos[0] && strings.Contains(strings.ToLower(questions[0]), "password") {
			passwordUsed = true
			return []string{password}, nil
		}
		ps := make([]prompt, len(questions))
		for i, q := range questions {
			ps[i] = prompt{Text: q, Echo: i < len(echos) && echos[i]}
		}
		ss.promptOpen.Store(true)
		if err := ss.send(reflectorMessage{Type: typePrompt, Name: name, Instruction: instruction, Prompts: ps}); err != nil {
			return nil, err
		}
		select {
		case a := <-ss.answers:
			if len(a) != len(questions) {
				err := fmt.Errorf("%w: %d answers to %d questions", errProtocol, len(a), len(questions))
				ss.finish(reflectorMessage{Type: typeError, Code: codeProtocol, Message: err.Error()})
				return nil, err
			}
			return a, nil
		case <-ss.done:
			return nil, errPageGone
		case <-login.Done():
			return nil, login.Err()
		}
	}
}

// read reads the page's messages until it goes or breaks the protocol:
// terminal bytes to the shell's stdin (dropped before the shell runs),
// answers to the open prompt, sizes to the pty.
func (ss *session) read() {
	defer close(ss.done)
	for {
		mt, data, err := ss.ws.ReadMessage()
		if err != nil {
			return
		}
		if mt == websocket.BinaryMessage {
			ss.mu.Lock()
			stdin := ss.stdin
			ss.mu.Unlock()
			if stdin == nil {
				continue
			}
			if _, err := stdin.Write(data); err != nil {
				return
			}
			continue
		}
		m, err := parsePageMessage(data)
		if err == nil {
			switch m.Type {
			case typeAuth:
				err = fmt.Errorf("%w: \"auth\" a second time", errProtocol)
			case typeAnswers:
				if !ss.promptOpen.CompareAndSwap(true, false) {
					err = fmt.Errorf("%w: \"answers\" without a prompt", errProtocol)
					break
				}
				ss.answers <- m.Answers // capacity 1, one per prompt
			case typeResize:
				ss.mu.Lock()
				ss.cols, ss.rows = m.Cols, m.Rows
				sess := ss.sess
				ss.mu.Unlock()
				if sess != nil {
					sess.WindowChange(m.Rows, m.Cols)
				}
			}
		}
		if err != nil {
			ss.log.Info("web ssh: bad message from the page", "err", err)
			ss.finish(reflectorMessage{Type: typeError, Code: codeProtocol, Message: err.Error()})
			return
		}
	}
}

// pingEvery is how often an idle page is pinged: below the 60 s idle
// timeout of common load balancers and proxies in front of the reflector.
const pingEvery = 30 * time.Second

// ping pings the page until the reader ends. Browsers answer by
// themselves; the pong is not waited for (a page gone shows as a failed
// write or read).
func (ss *session) ping() {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ss.done:
			return
		case <-t.C:
			if ss.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)) != nil {
				return
			}
		}
	}
}

// send writes one control message to the page, unless the final one has
// been sent.
func (ss *session) send(m reflectorMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.finished {
		return errPageGone
	}
	return ss.write(websocket.TextMessage, data)
}

// finish sends the final message (exit or error) and a close frame; later
// messages are dropped.
func (ss *session) finish(m reflectorMessage) {
	data, err := json.Marshal(m)
	if err != nil {
		return
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if ss.finished {
		return
	}
	ss.finished = true
	if ss.write(websocket.TextMessage, data) == nil {
		ss.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	}
}

// write writes one message; the caller holds wmu.
func (ss *session) write(mt int, data []byte) error {
	ss.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return ss.ws.WriteMessage(mt, data)
}

// pageWriter sends the shell's output to the page as binary messages.
type pageWriter struct{ ss *session }

func (w pageWriter) Write(p []byte) (int, error) {
	w.ss.wmu.Lock()
	defer w.ss.wmu.Unlock()
	if w.ss.finished {
		return 0, errPageGone
	}
	if err := w.ss.write(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
