package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	verrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/internal/auth"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/internal/server"
	"github.com/reflector-dev/reflector/store"
)

// The tests run a whole reflector (server.New) on 127.0.0.1:0 over real
// TLS, and talk to it with net/http. Every response a test sees is
// validated against the OpenAPI document (validatingTransport), so the
// document and the code cannot drift apart unnoticed.

// openAPI is the validator of the document, made once: building it parses
// and compiles every schema.
var openAPI = sync.OnceValues(func() (validator.Validator, error) {
	doc, err := libopenapi.NewDocument(api.OpenAPIDocument())
	if err != nil {
		return nil, fmt.Errorf("parse OpenAPI document: %w", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("OpenAPI validator: %v", errs)
	}
	return v, nil
})

// validatingTransport checks every API response against the document:
// those under /api/v1 and those of the macchina.io paths it also describes.
type validatingTransport struct {
	t    testing.TB
	next http.RoundTripper
}

func (vt validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := vt.next.RoundTrip(req)
	if err != nil || !documented(req.URL.Path) {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	v, verr := openAPI()
	if verr != nil {
		vt.t.Errorf("%v", verr)
		return resp, nil
	}
	// The validator reads both bodies; give it copies.
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
	vresp := *resp
	vresp.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := v.ValidateHttpResponse(vreq, &vresp); !ok {
		if undocumented(errs) && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
			// A path or method the document has not: it can only be
			// held to the error shape.
			var e apiError
			if json.Unmarshal(body, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				vt.t.Errorf("%s %s → %d: not an API error: %s", req.Method, req.URL.Path, resp.StatusCode, body)
			}
			return resp, nil
		}
		for _, e := range errs {
			vt.t.Errorf("%s %s → %d: response does not match the OpenAPI document: %s (%s) %v; body %s",
				req.Method, req.URL.Path, resp.StatusCode, e.Message, e.Reason, e.SchemaValidationErrors, body)
		}
	}
	return resp, nil
}

// undocumented reports whether the validator refused a response only for
// its request's path or method not being in the document.
func undocumented(errs []*verrors.ValidationError) bool {
	for _, e := range errs {
		if e.ValidationType != "path" {
			return false
		}
	}
	return len(errs) > 0
}

// documented reports whether the OpenAPI document describes path's
// answers: the paths under /api/v1 and the two macchina.io paths.
func documented(path string) bool {
	return strings.HasPrefix(path, api.Prefix+"/") || path == api.CompatDevicesPath || path == api.CompatProvisionPath
}

// rig is a running reflector and an admin with an API token.
type rig struct {
	t          *testing.T
	srv        *server.Server
	base       string // https://127.0.0.1:port
	client     *http.Client
	adminToken string
}

// serverConfig is the reflector's configuration, for newRig's options.
type serverConfig = server.Config

func newRig(t *testing.T, options ...func(*serverConfig)) *rig {
	t.Helper()
	cfg := server.Config{
		Listen:  "127.0.0.1:0",
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.DiscardHandler),
		// A test's wrong tokens must not lock its own address out.
		Throttle: auth.LimiterConfig{Failures: 1000},
	}
	for _, o := range options {
		o(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	pool := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(s.Certificate().Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(leaf)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	r := &rig{
		t:      t,
		srv:    s,
		base:   "https://" + s.Addr().String(),
		client: &http.Client{Transport: validatingTransport{t: t, next: tr}, Timeout: 30 * time.Second},
	}
	r.addUser("root", store.RoleAdmin)
	r.adminToken = r.token("root")
	return r
}

// addUser adds a user with a generated password, in groups.
func (r *rig) addUser(name string, role store.Role, groups ...string) {
	r.t.Helper()
	if err := r.srv.Store().AddUser(name, "password-of-"+name, role, groups); err != nil {
		r.t.Fatal(err)
	}
}

// token makes an API token for user.
func (r *rig) token(user string) string {
	r.t.Helper()
	tok, _, err := r.srv.Store().CreateToken(store.Token{User: user, Name: "test-" + fmt.Sprint(time.Now().UnixNano())})
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// addGroup adds a group.
func (r *rig) addGroup(name string) {
	r.t.Helper()
	if err := r.srv.Store().AddGroup(store.Group{Name: name}); err != nil {
		r.t.Fatal(err)
	}
}

// addDevice adds a device in groups and returns its secret.
func (r *rig) addDevice(id string, groups ...string) string {
	r.t.Helper()
	secret, err := r.srv.Store().AddDevice(store.Device{ID: id, Groups: groups})
	if err != nil {
		r.t.Fatal(err)
	}
	return secret
}

// call sends method path with token (none for "") and body (JSON-encoded
// unless a string or nil), and returns the status and the raw body.
func (r *rig) call(method, path, token string, body any, headers ...string) (int, []byte, http.Header) {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Host = "localhost"
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode, data, resp.Header
}

// must sends the request and fails the test unless the status is want; it
// decodes the answer into out when out is not nil.
func (r *rig) must(want int, method, path, token string, body, out any) {
	r.t.Helper()
	status, data, _ := r.call(method, path, token, body)
	if status != want {
		r.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			r.t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// apiError is the error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// mustFail sends the request and checks the status, the error code and
// (when not "") the field.
func (r *rig) mustFail(status int, code, field, method, path, token string, body any) apiError {
	r.t.Helper()
	got, data, _ := r.call(method, path, token, body)
	var e apiError
	if err := json.Unmarshal(data, &e); err != nil {
		r.t.Fatalf("%s %s: %d, body not an error: %s", method, path, got, data)
	}
	if got != status || e.Error.Code != code || (field != "" && e.Error.Field != field) {
		r.t.Fatalf("%s %s: %d %s field %q (%s), want %d %s field %q", method, path, got, e.Error.Code, e.Error.Field,
			e.Error.Message, status, code, field)
	}
	return e
}

// startAgent connects our agent (in-process, over real TLS) for a device
// added with addDevice's secret, with an echo server on one local port,
// and waits until the reflector has it online. It returns the port.
func (r *rig) startAgent(id, secret string) uint16 {
	r.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	a, err := agent.New(agent.Config{
		ReflectorURL: r.base, DeviceID: id, Secret: secret, Ports: []uint16{port},
		Fingerprint: r.srv.Fingerprint(),
	}, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := r.srv.Hub().Status(id); ok {
			return port
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("agent %s did not connect", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connect opens a CONNECT stream to device:port through the proxy as user
// with token, and returns the connection after the 200.
func (r *rig) connect(user, token, device string, port uint16) net.Conn {
	r.t.Helper()
	conn, err := tls.Dial("tcp", r.srv.Addr().String(), r.client.Transport.(validatingTransport).next.(*http.Transport).TLSClientConfig)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":" + token))
	fmt.Fprintf(conn, "CONNECT %s.localhost:%d HTTP/1.1\r\nHost: %s.localhost:%d\r\nProxy-Authorization: Basic %s\r\n\r\n",
		device, port, device, port, cred)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("CONNECT %s:%d: %s", device, port, resp.Status)
	}
	return conn
}

// opsLocal is the control socket's caller, for set-up through ops.
func opsLocal() ops.Caller { return ops.Local() }
