package webssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testSSHD is a real SSH server on 127.0.0.1 for the tests, the device's
// side: user "pi" logs in with password "raspberry"; user "otp" answers a
// keyboard-interactive code "123456" after the password; a shell request
// runs /bin/sh -i with its stdio on the channel (no pty: the shell reads
// lines). It records what clients did.
type testSSHD struct {
	t    *testing.T
	ln   net.Listener
	key  ssh.Signer
	port uint16

	mu        sync.Mutex
	passwords int      // password attempts
	ptys      []string // "TERM COLSxROWS" of each pty-req
	resizes   []string // "COLSxROWS" of each window-change
}

func newTestSSHD(t *testing.T) *testSSHD {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testSSHD{t: t, ln: ln, key: signer, port: uint16(ln.Addr().(*net.TCPAddr).Port)}
	t.Cleanup(func() { ln.Close() })
	go d.serve()
	return d
}

// newKey gives the server another host key: the device was reinstalled,
// or someone else answers on its port.
func (d *testSSHD) newKey() {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		d.t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		d.t.Fatal(err)
	}
	d.mu.Lock()
	d.key = signer
	d.mu.Unlock()
}

func (d *testSSHD) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			d.mu.Lock()
			d.passwords++
			d.mu.Unlock()
			if string(pw) != "raspberry" {
				return nil, ssh.ErrNoAuth
			}
			if c.User() == "otp" {
				return nil, &ssh.PartialSuccessError{Next: ssh.ServerAuthCallbacks{
					KeyboardInteractiveCallback: func(c ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
						a, err := ask("otp", "Second factor", []string{"Verification code: "}, []bool{false})
						if err != nil || len(a) != 1 || a[0] != "123456" {
							return nil, ssh.ErrNoAuth
						}
						return nil, nil
					},
				}}
			}
			if c.User() != "pi" {
				return nil, ssh.ErrNoAuth
			}
			return nil, nil
		},
	}
	d.mu.Lock()
	cfg.AddHostKey(d.key)
	d.mu.Unlock()
	return cfg
}

func (d *testSSHD) serve() {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		go d.handle(c)
	}
}

func (d *testSSHD) handle(c net.Conn) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, d.config())
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go d.session(ch, creqs)
	}
}

func (d *testSSHD) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "pty-req":
			var p struct {
				Term             string
				Cols, Rows, W, H uint32
				Modes            string
			}
			ssh.Unmarshal(req.Payload, &p)
			d.mu.Lock()
			d.ptys = append(d.ptys, p.Term+" "+size(p.Cols, p.Rows))
			d.mu.Unlock()
			req.Reply(true, nil)
		case "window-change":
			if len(req.Payload) >= 8 {
				d.mu.Lock()
				d.resizes = append(d.resizes, size(binary.BigEndian.Uint32(req.Payload), binary.BigEndian.Uint32(req.Payload[4:])))
				d.mu.Unlock()
			}
		case "shell":
			req.Reply(true, nil)
			go d.shell(ch)
		default:
			req.Reply(false, nil)
		}
	}
}

// shell runs /bin/sh -i on the channel and sends its exit status.
func (d *testSSHD) shell(ch ssh.Channel) {
	cmd := exec.Command("/bin/sh", "-i")
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	// Our own stdin copier: exec's would make Wait wait for the client to
	// close its stdin, which a terminal never does.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return
	}
	go io.Copy(stdin, ch)
	status := uint32(0)
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			status = uint32(ee.ExitCode())
		} else {
			status = 255
		}
	}
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
	ch.Close()
}

func size(cols, rows uint32) string { return fmt.Sprintf("%dx%d", cols, rows) }
