package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/reflector-dev/reflector/client"
	"golang.org/x/term"
)

// cmdLogin asks for the user, password and TOTP code, makes a token named
// after this host and keeps it in the credentials file. A self-signed
// reflector's fingerprint is shown and, once the user agrees, kept.
func cmdLogin(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("login")
	name := fs.String("name", "", "the token's name (default remote@HOSTNAME)")
	totp := fs.String("totp", "", "the TOTP code (asked when needed)")
	rest, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch len(rest) {
	case 0:
	case 1:
		e.url = rest[0]
	default:
		return usageError("want remote login [URL]")
	}
	e.url = firstOf(e.url, getenv("REMOTE_URL"))
	e.user = firstOf(e.user, getenv("REMOTE_USER", "REMOTE_USERNAME"))
	e.fingerprint = firstOf(e.fingerprint, getenv("REMOTE_FINGERPRINT"))
	e.caFile = firstOf(e.caFile, getenv("REMOTE_CA_FILE"))
	credPath, knownPath, err := paths()
	if err != nil {
		return err
	}
	creds, err := client.LoadCredentials(credPath)
	if err != nil {
		return err
	}
	if e.url == "" {
		e.url = creds.Current
	}
	if e.url, err = client.NormalizeURL(e.url); err != nil {
		return err
	}
	p := newPrompter(e)
	known := client.KnownReflectors{Path: knownPath}
	c, err := client.New(client.Config{URL: e.url, Trust: client.Trust{CAFile: e.caFile, Fingerprint: e.fingerprint, Known: known}})
	if err != nil {
		return err
	}
	// The certificate first, before a password is sent anywhere.
	conn, err := c.DialReflector(ctx)
	var fe *client.FingerprintError
	switch {
	case errors.As(err, &fe) && errors.Is(err, client.ErrUnknownCertificate):
		fmt.Fprintf(e.stderr, "The certificate of %s is not signed by an authority this computer knows.\n"+
			"Its SHA-256 fingerprint is\n  %s\nCompare it with the one the reflector printed at start (reflector serve).\n", fe.Addr, fe.Got)
		answer, err := p.line("Trust it and remember it? (yes/no): ")
		if err != nil {
			return err
		}
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "yes" && a != "y" {
			return errors.New("login cancelled: the reflector's certificate was not trusted")
		}
		if err := known.Add(fe.Addr, fe.Got); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Kept in %s.\n", knownPath)
	case err != nil:
		return err
	default:
		conn.Close()
	}
	if e.fingerprint != "" {
		// A pin given for the login is kept for the commands that follow.
		pin, err := client.ParseFingerprint(e.fingerprint)
		if err != nil {
			return err
		}
		if err := known.Add(strings.TrimPrefix(e.url, "https://"), pin); err != nil {
			return err
		}
	}

	if e.user == "" {
		if e.user, err = p.line("User: "); err != nil {
			return err
		}
		e.user = strings.TrimSpace(e.user)
	}
	password := getenv("REMOTE_PASSWORD")
	if password == "" {
		if password, err = p.secret("Password: "); err != nil {
			return err
		}
	}
	tokenName := firstOf(*name, defaultTokenName())
	got, err := c.Login(ctx, e.user, password, *totp, tokenName)
	if errors.Is(err, client.ErrTOTPRequired) {
		code, perr := p.line("One-time password (TOTP): ")
		if perr != nil {
			return perr
		}
		got, err = c.Login(ctx, e.user, password, strings.TrimSpace(code), tokenName)
	}
	if errors.Is(err, client.ErrBadCredentials) {
		return explained{fmt.Errorf("%w; check them, or ask an admin whether the account is locked", err)}
	}
	if err != nil {
		return err
	}
	// Reload: another login may have written the file meanwhile.
	if creds, err = client.LoadCredentials(credPath); err != nil {
		return err
	}
	if old, ok := creds.Logins[e.url]; ok && old.TokenID != "" && old.TokenID != got.TokenID {
		// The token of the previous login here is of no use any more.
		prev, err := client.New(client.Config{URL: e.url, User: old.User, Token: old.Token,
			Trust: client.Trust{CAFile: e.caFile, Fingerprint: e.fingerprint, Known: known}})
		if err == nil {
			prev.Revoke(ctx, old.TokenID)
		}
	}
	creds.Logins[e.url] = client.Login{URL: e.url, User: got.User, Token: got.Token, TokenID: got.TokenID}
	creds.Current = e.url
	if err := creds.Save(credPath); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Logged in to %s as %s; token %s kept in %s\n", e.url, got.User, tokenName, credPath)
	return nil
}

// defaultTokenName is remote@ and this host's name, in the characters a
// token's name may have.
func defaultTokenName() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	b := []byte(host)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "remote"
	}
	if len(b) > 50 {
		b = b[:50]
	}
	return "remote@" + string(b)
}

// cmdLogout revokes the login's token and forgets it.
func cmdLogout(ctx context.Context, e *env, args []string) error {
	fs := e.newFlags("logout")
	if rest, err := e.parseInterspersed(fs, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usageError("want remote logout [-R URL]")
	}
	credPath, _, err := paths()
	if err != nil {
		return err
	}
	creds, err := client.LoadCredentials(credPath)
	if err != nil {
		return err
	}
	e.url = firstOf(e.url, getenv("REMOTE_URL"))
	l, ok := creds.Find(e.url)
	if !ok {
		return fmt.Errorf("%w to %s: nothing to log out of", client.ErrNotLoggedIn, firstOf(e.url, "any reflector"))
	}
	e.url, e.user, e.token = l.URL, l.User, l.Token
	e.fingerprint = firstOf(e.fingerprint, getenv("REMOTE_FINGERPRINT"))
	e.caFile = firstOf(e.caFile, getenv("REMOTE_CA_FILE"))
	c, err := e.client()
	if err != nil {
		return err
	}
	err = c.Revoke(ctx, l.TokenID)
	if err != nil && !errors.Is(err, client.ErrBadCredentials) {
		// Kept: a token that could not be revoked is still valid.
		return fmt.Errorf("%w (the credentials are kept; run remote logout again)", err)
	}
	delete(creds.Logins, l.URL)
	if creds.Current == l.URL {
		creds.Current = ""
	}
	if err := creds.Save(credPath); err != nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(e.stdout, "The token was no longer valid; forgotten. Logged out of %s\n", l.URL)
		return nil
	}
	fmt.Fprintf(e.stdout, "Token revoked; logged out of %s\n", l.URL)
	return nil
}

// prompter reads answers from the terminal, or lines from stdin when it is
// not one (scripts, tests).
type prompter struct {
	e  *env
	br *bufio.Reader
	fd int // the terminal's, or -1
}

func newPrompter(e *env) *prompter {
	p := &prompter{e: e, br: bufio.NewReader(e.stdin), fd: -1}
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.fd = int(f.Fd())
	}
	return p
}

// line asks prompt and reads a line.
func (p *prompter) line(prompt string) (string, error) {
	fmt.Fprint(p.e.stderr, prompt)
	s, err := p.br.ReadString('\n')
	if err != nil && (s == "" || !errors.Is(err, io.EOF)) {
		return "", fmt.Errorf("read answer: %w", err)
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// secret asks prompt and reads a line without echo on a terminal.
func (p *prompter) secret(prompt string) (string, error) {
	if p.fd < 0 {
		return p.line(prompt)
	}
	fmt.Fprint(p.e.stderr, prompt)
	b, err := term.ReadPassword(p.fd)
	fmt.Fprintln(p.e.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}
