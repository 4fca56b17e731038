package webssh

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The page's WebSocket carries two kinds of messages (docs/web-ssh.md has
// the whole exchange):
//
//   - binary messages: terminal bytes, the page's keystrokes and pastes to
//     the shell, the shell's output to the page (UTF-8, as the pty makes it);
//   - text messages: one JSON object each, {"type": …, …}, for control.
//
// The page sends, in this order:
//
//	{"type":"auth","user":"pi","password":"…","cols":120,"rows":40}  first, once
//	{"type":"answers","answers":["123456"]}                          after each "prompt"
//	{"type":"resize","cols":100,"rows":30}                            any time after "auth"
//
// The reflector sends:
//
//	{"type":"hostkey","status":"new"|"known","keyType":"ssh-ed25519","fingerprint":"SHA256:…"}
//	{"type":"prompt","name":"…","instruction":"…","prompts":[{"text":"Code: ","echo":false}]}
//	{"type":"ready"}                                  the shell runs; binary messages follow
//	{"type":"exit","exitStatus":0,"message":"…"}      the shell ended (exitStatus absent: unknown)
//	{"type":"error","code":"…","message":"…"}         and then closes
//
// An error's code is one of the errCode constants; for "hostkey-changed" it
// also carries "expected" and "fingerprint" (the key kept and the key
// shown). Anything else from the page — a message that is not one JSON
// object of a known type, a field out of range, an "auth" twice — is
// answered with an error of code "protocol" and the connection is closed.

// Message types.
const (
	typeAuth    = "auth"
	typeAnswers = "answers"
	typeResize  = "resize"
	typeHostKey = "hostkey"
	typePrompt  = "prompt"
	typeReady   = "ready"
	typeExit    = "exit"
	typeError   = "error"
)

// Error codes of "error" messages.
const (
	codeProtocol       = "protocol"        // the page sent something this protocol does not allow
	codeUnreachable    = "unreachable"     // no stream to the device's SSH port: offline, refused, no access
	codeHostKeyChanged = "hostkey-changed" // the device showed another key than the one kept
	codeAuth           = "auth"            // the device's SSH server refused the login
	codeSSH            = "ssh"             // the SSH connection or session failed otherwise
	codeTimeout        = "timeout"         // the page did not log in or answer in time
	codeClosed         = "closed"          // the reflector is shutting down
)

// Limits on what the page sends.
const (
	maxMessage    = 64 << 10 // one message, text or binary (a paste is cut into messages by the page)
	maxUserName   = 256
	maxSecret     = 1024 // a password or an answer
	maxAnswers    = 16
	maxDimension  = 1000 // columns or rows
	defaultColumn = 80
	defaultRow    = 24
)

// pageMessage is a control message from the page.
type pageMessage struct {
	Type     string   `json:"type"`
	User     string   `json:"user,omitempty"`
	Password string   `json:"password,omitempty"`
	Cols     int      `json:"cols,omitempty"`
	Rows     int      `json:"rows,omitempty"`
	Answers  []string `json:"answers,omitempty"`
}

// prompt is one question of a keyboard-interactive round.
type prompt struct {
	Text string `json:"text"`
	Echo bool   `json:"echo"`
}

// reflectorMessage is a control message to the page.
type reflectorMessage struct {
	Type        string   `json:"type"`
	Code        string   `json:"code,omitempty"`
	Message     string   `json:"message,omitempty"`
	Status      string   `json:"status,omitempty"`
	KeyType     string   `json:"keyType,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Expected    string   `json:"expected,omitempty"`
	Name        string   `json:"name,omitempty"`
	Instruction string   `json:"instruction,omitempty"`
	Prompts     []prompt `json:"prompts,omitempty"`
	ExitStatus  *int     `json:"exitStatus,omitempty"`
}

// errProtocol marks a message from the page that breaks the protocol; its
// text says what was wrong.
var errProtocol = errors.New("protocol error")

// parsePageMessage reads one text message from the page and checks it: one
// JSON object of a known type, no unknown fields, every field in range.
func parsePageMessage(data []byte) (pageMessage, error) {
	var m pageMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: not a control message: %v", errProtocol, err)
	}
	if dec.More() {
		return m, fmt.Errorf("%w: more than one JSON value in a message", errProtocol)
	}
	switch m.Type {
	case typeAuth:
		if m.User == "" || len(m.User) > maxUserName || !printable(m.User) {
			return m, fmt.Errorf("%w: auth: a user name of 1-%d printable characters required", errProtocol, maxUserName)
		}
		if len(m.Password) > maxSecret {
			return m, fmt.Errorf("%w: auth: password longer than %d bytes", errProtocol, maxSecret)
		}
		if m.Cols == 0 && m.Rows == 0 {
			m.Cols, m.Rows = defaultColumn, defaultRow
		}
		if err := checkSize(m); err != nil {
			return m, err
		}
	case typeResize:
		if err := checkSize(m); err != nil {
			return m, err
		}
	case typeAnswers:
		if len(m.Answers) > maxAnswers {
			return m, fmt.Errorf("%w: answers: more than %d", errProtocol, maxAnswers)
		}
		for _, a := range m.Answers {
			if len(a) > maxSecret {
				return m, fmt.Errorf("%w: answers: an answer longer than %d bytes", errProtocol, maxSecret)
			}
		}
	case "":
		return m, fmt.Errorf("%w: a message without \"type\"", errProtocol)
	default:
		return m, fmt.Errorf("%w: unknown message type %q", errProtocol, clip(m.Type))
	}
	return m, nil
}

func checkSize(m pageMessage) error {
	if m.Cols < 1 || m.Cols > maxDimension || m.Rows < 1 || m.Rows > maxDimension {
		return fmt.Errorf("%w: %s: cols and rows must be 1-%d, not %dx%d", errProtocol, m.Type, maxDimension, m.Cols, m.Rows)
	}
	return nil
}

// printable reports whether s is UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// clip shortens what the page sent for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
