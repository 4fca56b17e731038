package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The REST API's paths the client uses (docs/api.md).
const (
	apiPrefix = "/api/v1"
	// tokenFromPassword is macchina.io's remote-login endpoint: a 24-hour
	// token from a password and TOTP code.
	tokenFromPassword = "/my-devices/api/token"
)

// ErrTOTPRequired: the user has TOTP and the login gave no code.
var ErrTOTPRequired = errors.New("one-time password required")

// httpClient is an HTTP client whose connections are the client's
// DialReflector: the same proxy and the same certificate checks as the
// CONNECT path.
func (c *Client) httpClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.DialReflector(ctx) },
			// The proxy, if any, is inside DialReflector.
			Proxy:                 nil,
			ForceAttemptHTTP2:     false,
			ResponseHeaderTimeout: c.cfg.DialTimeout,
			MaxIdleConnsPerHost:   1,
		},
		Timeout: 2 * c.cfg.DialTimeout,
	}
}

// do sends an API request with the client's token as Bearer and decodes a
// JSON answer into out (when out is non-nil). A refusal is a *StatusError
// with the API's message.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url.String()+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	return c.send(req, out)
}

// send sends req and decodes its answer into out.
func (c *Client) send(req *http.Request, out any) error {
	hc := c.httpClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the reflector's address already
		}
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, apiError(resp))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// apiError reads a refusal: {"error": {"message": …}} from /api/v1,
// {"error": "…"} from the macchina.io paths.
func apiError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(b, &v) == nil && len(v.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v.Error, &obj) == nil && obj.Message != "" {
			msg = obj.Message
		} else {
			json.Unmarshal(v.Error, &msg)
		}
	}
	if msg == "" {
		msg, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	}
	return &StatusError{Status: resp.StatusCode, Reason: msg}
}

// NewLogin is what Login makes: a token of its own for this client.
type NewLogin struct {
	Token, TokenID, User string
}

// Login turns a password (and TOTP code, when the user has TOTP) into an
// API token named name, which lives until it is revoked. The API makes
// tokens only for a caller that has one, so Login first gets a 24-hour
// token from the password (POST /my-devices/api/token, the endpoint
// macchina.io's remote-login uses, throttled and audited as every login),
// makes the named token with it (POST /api/v1/tokens), and revokes it. A
// user with TOTP and no code is ErrTOTPRequired; wrong credentials are a
// *StatusError wrapping ErrBadCredentials. A name taken already gets a
// random suffix.
func (c *Client) Login(ctx context.Context, user, password, totp, name string) (NewLogin, error) {
	form := url.Values{"username": {user}, "password": {password}, "application": {"remote-login"}}
	if totp != "" {
		form.Set("totp", totp)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.String()+tokenFromPassword, strings.NewReader(form.Encode()))
	if err != nil {
		return NewLogin{}, fmt.Errorf("log in: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var first struct {
		Token string `json:"token"`
	}
	if err := c.sendLogin(req, &first); err != nil {
		return NewLogin{}, err
	}
	bootstrap := *c
	bootstrap.cfg.Token = first.Token
	var me struct {
		User struct {
			Name string `json:"name"`
		} `json:"user"`
		TokenID string `json:"tokenId"`
	}
	if err := bootstrap.do(ctx, http.MethodGet, apiPrefix+"/me", nil, &me); err != nil {
		return NewLogin{}, fmt.Errorf("log in: %w", err)
	}
	// However the rest goes, the 24-hour token is revoked: it was only
	// the means to make the named one.
	defer bootstrap.do(context.WithoutCancel(ctx), http.MethodDelete, apiPrefix+"/tokens/"+url.PathEscape(me.TokenID), nil, nil)

	var made struct {
		Token struct {
			ID string `json:"id"`
		} `json:"token"`
		Secret string `json:"secret"`
	}
	tokenName := name
	for attempt := range 3 {
		if attempt > 0 {
			var b [3]byte
			rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
			tokenName = name + "-" + hex.EncodeToString(b[:])
		}
		err = bootstrap.do(ctx, http.MethodPost, apiPrefix+"/tokens", map[string]string{"name": tokenName}, &made)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != http.StatusConflict {
			break
		}
	}
	if err != nil {
		return NewLogin{}, fmt.Errorf("log in: make token %s: %w", tokenName, err)
	}
	return NewLogin{Token: made.Secret, TokenID: made.Token.ID, User: me.User.Name}, nil
}

// sendLogin sends the password form and tells a missing TOTP code apart.
func (c *Client) sendLogin(req *http.Request, out any) error {
	hc := c.httpClient()
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("log in: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("X-Authenticate") == "TOTP" {
		return ErrTOTPRequired
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("log in: %w", apiError(resp))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("log in: read the answer: %w", err)
	}
	return nil
}

// Revoke revokes the token with id tokenID (the client's own, when it is
// the one logged in with).
func (c *Client) Revoke(ctx context.Context, tokenID string) error {
	if err := c.do(ctx, http.MethodDelete, apiPrefix+"/tokens/"+url.PathEscape(tokenID), nil, nil); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// TokenID is the id of the client's token (GET /api/v1/me).
func (c *Client) TokenID(ctx context.Context) (string, error) {
	var me struct {
		TokenID string `json:"tokenId"`
	}
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/me", nil, &me); err != nil {
		return "", fmt.Errorf("who am I: %w", err)
	}
	return me.TokenID, nil
}

// Device is a device as GET /api/v1/devices lists it; Raw is the API's
// whole object, for --json.
type Device struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Ports  []int    `json:"ports"`
	Status struct {
		Online     bool              `json:"online"`
		LastSeen   *time.Time        `json:"lastSeen"`
		Since      *time.Time        `json:"connectedSince"`
		AgentPorts []int             `json:"agentPorts"`
		Properties map[string]string `json:"properties"`
	} `json:"status"`
	Raw json.RawMessage `json:"-"`
}

// Devices lists the devices the user may reach, every page of them; only
// those online when online is true.
func (c *Client) Devices(ctx context.Context, online bool) ([]Device, error) {
	var all []Device
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if online {
			q.Set("online", "true")
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := c.do(ctx, http.MethodGet, apiPrefix+"/devices?"+q.Encode(), nil, &page); err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		for _, raw := range page.Items {
			var d Device
			if err := json.Unmarshal(raw, &d); err != nil {
				return nil, fmt.Errorf("list devices: %w", err)
			}
			d.Raw = raw
			all = append(all, d)
		}
		if page.NextCursor == "" {
			return all, nil
		}
		cursor = page.NextCursor
	}
}

// Device returns one device (GET /api/v1/devices/{id}).
func (c *Client) Device(ctx context.Context, id string) (Device, error) {
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/devices/"+url.PathEscape(DeviceID(id)), nil, &raw); err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	var d Device
	if err := json.Unmarshal(raw, &d); err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	d.Raw = raw
	return d, nil
}
