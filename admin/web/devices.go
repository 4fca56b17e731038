package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/proxy"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// The device pages: a device's record, status, streams, audit entries and
// the lines that reach its services; for admins the forms that change it,
// the add-device form and the enrolment keys (enroll.go).

// deviceRoutes are the device pages' routes.
func (w *Web) deviceRoutes() map[string]handler {
	return map[string]handler{
		"GET /devices/new":                     w.newDeviceForm,
		"POST /devices/new":                    w.addDevice,
		"GET /devices/{id}":                    w.devicePage,
		"POST /devices/{id}":                   w.updateDevice,
		"POST /devices/{id}/rotate":            w.rotateSecret,
		"POST /devices/{id}/disable":           w.setDisabled(true),
		"POST /devices/{id}/enable":            w.setDisabled(false),
		"GET /devices/{id}/remove":             w.removeConfirm,
		"POST /devices/{id}/remove":            w.removeDevice,
		"POST /devices/{id}/streams/{sid}/cut": w.cutStream,
		"POST /devices/{id}/webtunnel-agent":   w.downloadProperties,
		"GET /enrollment-keys":                 w.enrollKeys,
		"POST /enrollment-keys":                w.createEnrollKey,
		"POST /enrollment-keys/{id}/remove":    w.removeEnrollKey,
	}
}

// auditOnDevicePage is how many of a device's audit entries its page shows,
// found among the newest auditScanOnDevicePage events of the whole log: a
// fleet's log is mostly other devices', and reading all of it for one
// device's page took 59 ms at 10,000 devices (docs/performance.md). The
// audit view finds older ones.
const (
	auditOnDevicePage     = 20
	auditScanOnDevicePage = 5000
)

// deviceForm is the add and edit form's input, kept to show again with an
// error.
type deviceForm struct {
	ID, Name, Ports, HTTPPort string
	HTTPTLS                   bool
	Groups                    []groupChoice
}

// groupChoice is a group's checkbox.
type groupChoice struct {
	Name    string
	Checked bool
}

// formErrors are a form's errors by field; "" is the form's own.
type formErrors map[string]string

// commandLine is a line to copy, with the id of its <pre>.
type commandLine struct {
	ID, Label, Text string
}

// prop is one of an agent's properties.
type prop struct{ Key, Value string }

// deviceView is the device page's data.
type deviceView struct {
	D          ops.Device
	Row        deviceRow
	Title      string // name, or id
	Ports      string // the record's port list
	AgentPorts string // the agent's, while online
	HTTP       string // the HTTP port as the record has it
	Props      []prop
	Streams    []proxy.Stream
	Audit      []store.AuditEvent // newest first
	Services   services
	Form       deviceForm
	Errors     formErrors
	HostKey    hostKeyView // the SSH host key kept for the terminal
	Done       string      // the key of the text of what was just done
	New        bool        // the add-device form, not a device's page
}

// services are the ways to reach a device's services.
type services struct {
	WebURL   string // its subdomain, when it has a web server
	HTTPPort uint16
	SSHPort  uint16
	VNCPort  uint16
	RDPPort  uint16
	VNCURL   string // the VNC viewer (vnc.go), when the device has a VNC port
	SSH      []commandLine
	Forward  []commandLine
	// Terminal is the SSH terminal page's path, when the device offers SSH
	// and web SSH is on.
	Terminal string
}

// devicePage shows a device.
func (w *Web) devicePage(rw http.ResponseWriter, r *http.Request, v *visit) error {
	id := r.PathValue("id")
	d, err := w.ops.Device(r.Context(), v.caller, id)
	if err != nil {
		return err
	}
	dv, err := w.deviceView(r, v, d)
	if err != nil {
		return err
	}
	dv.Form = formFromDevice(d.Device, nil)
	if v.caller.Admin() {
		if dv.Form.Groups, err = w.groupChoices(r, v, d.Groups); err != nil {
			return err
		}
	}
	switch done := r.URL.Query().Get("done"); done {
	case "saved", "cut", "disabled", "enabled", "cutGone", "hostKeyReset":
		dv.Done = "device.done." + done
	}
	w.renderDevice(rw, http.StatusOK, v, dv)
	return nil
}

func (w *Web) renderDevice(rw http.ResponseWriter, status int, v *visit, dv deviceView) {
	pv := view{Title: dv.Title, Nav: "devices", Data: dv}
	if dv.Done != "" {
		pv.Notice = w.brand.Text(dv.Done)
	}
	if msg, ok := dv.Errors[""]; ok {
		pv.Error = msg
	}
	w.render(rw, status, "device", v, pv)
}

// deviceView gathers what the device page shows of d.
func (w *Web) deviceView(r *http.Request, v *visit, d ops.Device) (deviceView, error) {
	dv := deviceView{D: d, Row: newDeviceRow(d), Title: d.ID, Ports: tunnel.FormatPorts(d.Ports)}
	if d.Name != "" {
		dv.Title = d.Name
	}
	if d.HTTPPort != 0 {
		dv.HTTP = strconv.Itoa(int(d.HTTPPort))
	}
	if d.Online {
		dv.AgentPorts = tunnel.FormatPorts(d.Tunnel.Ports)
		for k, val := range d.Tunnel.Properties {
			dv.Props = append(dv.Props, prop{k, val})
		}
		sort.Slice(dv.Props, func(i, j int) bool { return dv.Props[i].Key < dv.Props[j].Key })
	}
	streams, err := w.ops.DeviceStreams(r.Context(), v.caller, d.ID)
	if err != nil {
		return dv, err
	}
	dv.Streams = streams
	events, err := w.ops.AuditEvents(r.Context(), v.caller, store.AuditFilter{Device: d.ID, Limit: auditOnDevicePage, MaxScan: auditScanOnDevicePage})
	if err != nil {
		return dv, err
	}
	slices.Reverse(events)
	dv.Audit = events
	dv.Services = w.services(r, v, d)
	if dv.HostKey, err = w.hostKeyOf(r, v, d.ID); err != nil {
		return dv, err
	}
	return dv, nil
}

// services works out a device's services from its record and its agent's
// properties, and the command lines that reach them: macchina.io's client
// tools and curl, with the reflector and the device as the visitor's
// browser reached them.
func (w *Web) services(r *http.Request, v *visit, d ops.Device) services {
	var s services
	ports := d.Ports
	if len(ports) == 0 && d.Online {
		ports = d.Tunnel.Ports
	}
	propPort := func(key string) uint16 {
		if !d.Online {
			return 0
		}
		n, err := strconv.ParseUint(d.Tunnel.Properties[key], 10, 16)
		if err != nil {
			return 0
		}
		return uint16(n)
	}
	offers := func(p uint16) bool { return slices.Contains(ports, p) }
	s.HTTPPort = d.HTTPPort
	if s.HTTPPort == 0 {
		s.HTTPPort = propPort("httpPort")
	}
	if s.HTTPPort == 0 {
		for _, p := range []uint16{80, 443, 8080} {
			if offers(p) {
				s.HTTPPort = p
				break
			}
		}
	}
	if s.HTTPPort != 0 {
		s.WebURL = w.cfg.DeviceURL(d.ID)
	}
	s.SSHPort = propPort("sshPort")
	if s.SSHPort == 0 && offers(22) {
		s.SSHPort = 22
	}
	s.VNCPort = propPort("vncPort")
	if s.VNCPort == 0 && offers(5900) {
		s.VNCPort = 5900
	}
	if s.VNCPort != 0 && w.cfg.VNC != nil {
		s.VNCURL = "/devices/" + url.PathEscape(d.ID) + "/vnc"
	}
	s.RDPPort = propPort("rdpPort")
	if s.RDPPort == 0 && offers(3389) {
		s.RDPPort = 3389
	}

	admin := "https://" + r.Host
	deviceOrigin := strings.TrimSuffix(w.cfg.DeviceURL(d.ID), "/")
	deviceHost := d.ID
	if u, err := url.Parse(deviceOrigin); err == nil && u.Hostname() != "" {
		deviceHost = u.Hostname()
	}
	user := ops.ShellQuote(v.caller.User.Name)
	if s.SSHPort != 0 {
		port := ""
		if s.SSHPort != 22 {
			port = fmt.Sprintf(" -p %d", s.SSHPort)
		}
		// Our own client first (issue 20): it takes the token from its
		// login, so the line needs no TOKEN.
		s.SSH = append(s.SSH, commandLine{ID: "ssh-remote", Label: "device.ssh.remote",
			Text: fmt.Sprintf("remote ssh -R %s%s -l USER %s", admin, strings.Replace(port, "-p", "--port", 1), d.ID)})
		s.SSH = append(s.SSH, commandLine{ID: "ssh-proxycommand", Label: "device.ssh.proxyCommand",
			Text: fmt.Sprintf(`ssh -o ProxyCommand="remote connect -R %s %%h %%p"%s USER@%s`, admin, port, d.ID)})
		if w.cfg.WebSSH != nil {
			s.Terminal = "/devices/" + url.PathEscape(d.ID) + "/ssh"
		}
		if s.SSHPort == 22 {
			s.SSH = append(s.SSH, commandLine{ID: "ssh-remote-ssh", Label: "device.ssh.remoteSSH",
				Text: fmt.Sprintf("remote-ssh -t TOKEN -l USER %s", deviceOrigin)})
		}
	}
	if s.HTTPPort != 0 {
		scheme := "http"
		if d.HTTPTLS {
			scheme = "https"
		}
		s.Forward = append(s.Forward, commandLine{ID: "forward-curl", Label: "device.forward.curl",
			Text: fmt.Sprintf("curl -x %s --proxy-user %s:TOKEN %s://%s:%d/", admin, user, scheme, deviceHost, s.HTTPPort)})
	}
	forward := s.SSHPort
	for _, p := range []uint16{s.VNCPort, s.RDPPort, s.HTTPPort} {
		if forward == 0 {
			forward = p
		}
	}
	if forward == 0 && len(ports) > 0 {
		forward = ports[0]
	}
	if forward != 0 {
		s.Forward = append(s.Forward, commandLine{ID: "forward-remote", Label: "device.forward.remote",
			Text: fmt.Sprintf("remote forward -R %s %s %d:%d", admin, d.ID, localPort(forward), forward)})
		s.Forward = append(s.Forward, commandLine{ID: "forward-remote-client", Label: "device.forward.remoteClient",
			Text: fmt.Sprintf("remote-client -t TOKEN -R %d -L %d %s", forward, localPort(forward), deviceOrigin)})
		s.Forward = append(s.Forward, commandLine{ID: "forward-remote-connect", Label: "device.forward.remoteConnect",
			Text: fmt.Sprintf("remote-connect -t TOKEN -R %s %s:%d", admin, deviceHost, forward)})
	}
	return s
}

// localPort suggests a local port for a forwarded device port: above 1024,
// so no privileges are needed.
func localPort(p uint16) uint16 {
	if p < 1024 {
		return 10000 + p
	}
	return p
}

// formFromDevice is the edit form filled from d.
func formFromDevice(d store.Device, groups []groupChoice) deviceForm {
	f := deviceForm{ID: d.ID, Name: d.Name, Ports: strings.ReplaceAll(tunnel.FormatPorts(d.Ports), ",", ", "), HTTPTLS: d.HTTPTLS, Groups: groups}
	if d.HTTPPort != 0 {
		f.HTTPPort = strconv.Itoa(int(d.HTTPPort))
	}
	return f
}

// groupChoices are the existing groups as checkboxes, those in checked
// ticked.
func (w *Web) groupChoices(r *http.Request, v *visit, checked []string) ([]groupChoice, error) {
	groups, err := w.ops.Groups(r.Context(), v.caller)
	if err != nil {
		return nil, err
	}
	var out []groupChoice
	for _, g := range groups {
		out = append(out, groupChoice{Name: g.Name, Checked: slices.Contains(checked, g.Name)})
	}
	return out, nil
}

// parsedDevice is a device form's fields, checked.
type parsedDevice struct {
	form     deviceForm
	groups   []string
	ports    []uint16
	httpPort uint16
	errs     formErrors
}

// parseDeviceForm reads the add and edit forms' fields.
func (w *Web) parseDeviceForm(r *http.Request, v *visit) (parsedDevice, error) {
	p := parsedDevice{errs: formErrors{}}
	f := &p.form
	f.ID = strings.TrimSpace(r.PostFormValue("id"))
	f.Name = strings.TrimSpace(r.PostFormValue("name"))
	f.Ports = strings.TrimSpace(r.PostFormValue("ports"))
	f.HTTPPort = strings.TrimSpace(r.PostFormValue("http_port"))
	f.HTTPTLS = r.PostFormValue("http_tls") != ""
	p.groups = r.PostForm["groups"]
	if p.groups == nil {
		p.groups = []string{}
	}
	var err error
	if f.Groups, err = w.groupChoices(r, v, p.groups); err != nil {
		return p, err
	}
	if p.ports, err = tunnel.ParsePorts(f.Ports); err != nil {
		p.errs["ports"] = err.Error()
	}
	if p.ports == nil {
		p.ports = []uint16{}
	}
	if f.HTTPPort != "" {
		n, err := strconv.ParseUint(f.HTTPPort, 10, 16)
		if err != nil || n == 0 {
			p.errs["http_port"] = w.brand.Text("device.badHTTPPort")
		}
		p.httpPort = uint16(n)
	}
	return p, nil
}

// A form shown again with its errors is answered 200 OK, as a page the
// visitor asked for: browsers report a 4xx page load as a console error.

// opError puts a failed operation's error on its field, or on the form;
// errors that are not the input's (not allowed, gone) are returned. An
// error of no field goes to existsField when something exists already, to
// missingField when something named is missing ("" when that is no input
// error: the device itself is gone).
func opError(err error, errs formErrors, existsField, missingField string) error {
	if field, msg, ok := fieldError(err); ok {
		switch field {
		case "http_port", "httpPort":
			field = "http_port"
		}
		errs[field] = msg
		return nil
	}
	switch {
	case errors.Is(err, store.ErrExists):
		errs[existsField] = err.Error()
	case errors.Is(err, store.ErrNotFound) && missingField != "":
		errs[missingField] = err.Error()
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrQuota):
		errs[""] = err.Error()
	default:
		return err
	}
	return nil
}

// updateDevice saves the edit form.
func (w *Web) updateDevice(rw http.ResponseWriter, r *http.Request, v *visit) error {
	id := r.PathValue("id")
	d, err := w.ops.Device(r.Context(), v.caller, id)
	if err != nil {
		return err
	}
	if !v.caller.Admin() {
		return fmt.Errorf("change device %s: %w", id, ops.ErrForbidden)
	}
	p, err := w.parseDeviceForm(r, v)
	if err != nil {
		return err
	}
	p.form.ID = id
	if len(p.errs) == 0 {
		u := store.DeviceUpdate{Name: &p.form.Name, Groups: &p.groups, Ports: &p.ports, HTTPPort: &p.httpPort, HTTPTLS: &p.form.HTTPTLS}
		_, _, err = w.ops.UpdateDevice(r.Context(), v.caller, id, u)
		if err == nil {
			redirect(rw, "/devices/"+url.PathEscape(id)+"?done=saved")
			return nil
		}
		if err := opError(err, p.errs, "", ""); err != nil {
			return err
		}
	}
	dv, err := w.deviceView(r, v, d)
	if err != nil {
		return err
	}
	dv.Form, dv.Errors = p.form, p.errs
	if len(p.errs) > 0 {
		if _, ok := p.errs[""]; !ok {
			p.errs[""] = w.brand.Text("device.formErrors")
		}
	}
	w.renderDevice(rw, http.StatusOK, v, dv)
	return nil
}

// secretView is the page that shows a new secret once.
type secretView struct {
	D          ops.Device
	Secret     string // "" when the device's own was adopted
	AgentLine  string
	Properties string
	WasOnline  bool
	Added      bool
}

func (w *Web) renderSecret(rw http.ResponseWriter, v *visit, p ops.Provisioned, added bool) {
	d := p.Device
	sv := secretView{D: d, Secret: p.Secret, WasOnline: p.WasOnline, Added: added}
	if p.Secret == "" {
		sv.AgentLine = w.ops.AgentLine(d.ID, "'<the device's password>'", d.Ports, d.HTTPPort)
	} else {
		sv.AgentLine = w.ops.AgentLine(d.ID, ops.ShellQuoteAlways(p.Secret), d.Ports, d.HTTPPort)
		sv.Properties = w.ops.WebTunnelProperties(d.Device, p.Secret)
	}
	title := w.brand.Text("device.secret.title")
	if added {
		title = w.brand.Text("device.added.title")
	}
	w.render(rw, http.StatusOK, "device-secret", v, view{Title: title + " " + d.ID, Nav: "devices", Data: sv})
}

// rotateSecret gives the device a new secret and shows it once.
func (w *Web) rotateSecret(rw http.ResponseWriter, r *http.Request, v *visit) error {
	p, err := w.ops.RotateDeviceSecret(r.Context(), v.caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.renderSecret(rw, v, p, false)
	return nil
}

// downloadProperties answers a WebTunnelAgent.properties as a download.
// The secret comes in the form (the secret page's hidden field): it is
// never in a URL, and the reflector keeps only its hash.
func (w *Web) downloadProperties(rw http.ResponseWriter, r *http.Request, v *visit) error {
	id := r.PathValue("id")
	if !v.caller.Admin() {
		return fmt.Errorf("WebTunnelAgent.properties of %s: %w", id, ops.ErrForbidden)
	}
	d, err := w.ops.Device(r.Context(), v.caller, id)
	if err != nil {
		return err
	}
	secret := r.PostFormValue("secret")
	if secret == "" {
		return errForm
	}
	h := rw.Header()
	setPageHeaders(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="WebTunnelAgent.properties"`)
	_, err = rw.Write([]byte(w.ops.WebTunnelProperties(d.Device, secret)))
	return err
}

// setDisabled disables or enables a device.
func (w *Web) setDisabled(disabled bool) handler {
	return func(rw http.ResponseWriter, r *http.Request, v *visit) error {
		id := r.PathValue("id")
		if _, err := w.ops.SetDeviceDisabled(r.Context(), v.caller, id, disabled); err != nil {
			return err
		}
		done := "enabled"
		if disabled {
			done = "disabled"
		}
		redirect(rw, "/devices/"+url.PathEscape(id)+"?done="+done)
		return nil
	}
}

// removeConfirm asks before a device is removed: the page works without
// JavaScript.
func (w *Web) removeConfirm(rw http.ResponseWriter, r *http.Request, v *visit) error {
	d, err := w.ops.Device(r.Context(), v.caller, r.PathValue("id"))
	if err != nil {
		return err
	}
	if !v.caller.Admin() {
		return fmt.Errorf("remove device %s: %w", d.ID, ops.ErrForbidden)
	}
	name := d.ID
	if d.Name != "" {
		name = d.Name + " (" + d.ID + ")"
	}
	w.render(rw, http.StatusOK, "device-remove", v, view{Title: strings.ReplaceAll(w.brand.Text("device.remove.title"), "{device}", name), Nav: "devices", Data: d})
	return nil
}

// removeDevice removes a device.
func (w *Web) removeDevice(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if _, err := w.ops.RemoveDevice(r.Context(), v.caller, r.PathValue("id")); err != nil {
		return err
	}
	redirect(rw, "/")
	return nil
}

// cutStream ends an open stream.
func (w *Web) cutStream(rw http.ResponseWriter, r *http.Request, v *visit) error {
	id := r.PathValue("id")
	done := "cut"
	if _, err := w.ops.CutStream(r.Context(), v.caller, id, r.PathValue("sid")); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Ended before the click: say so on the device's page, unless
		// the device itself is gone.
		if _, err := w.ops.Device(r.Context(), v.caller, id); err != nil {
			return err
		}
		done = "cutGone"
	}
	redirect(rw, "/devices/"+url.PathEscape(id)+"?done="+done)
	return nil
}

// newDeviceForm shows the add-device form.
func (w *Web) newDeviceForm(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if !v.caller.Admin() {
		return fmt.Errorf("add a device: %w", ops.ErrForbidden)
	}
	groups, err := w.groupChoices(r, v, nil)
	if err != nil {
		return err
	}
	w.render(rw, http.StatusOK, "device", v, view{Title: w.brand.Text("device.new.title"), Nav: "devices",
		Data: deviceView{New: true, Form: deviceForm{Groups: groups}}})
	return nil
}

// addDevice adds the device of the form and shows its secret once.
func (w *Web) addDevice(rw http.ResponseWriter, r *http.Request, v *visit) error {
	if !v.caller.Admin() {
		return fmt.Errorf("add a device: %w", ops.ErrForbidden)
	}
	p, err := w.parseDeviceForm(r, v)
	if err != nil {
		return err
	}
	if p.form.ID == "" {
		p.errs["id"] = w.brand.Text("device.idRequired")
	}
	if len(p.errs) == 0 {
		prov, err := w.ops.AddDevice(r.Context(), v.caller, ops.NewDevice{
			ID: p.form.ID, Name: p.form.Name, Groups: p.groups, Ports: p.ports,
			HTTPPort: p.httpPort, HTTPTLS: p.form.HTTPTLS, Secret: r.PostFormValue("secret"),
		})
		if err == nil {
			w.renderSecret(rw, v, prov, true)
			return nil
		}
		if err := opError(err, p.errs, "id", "groups"); err != nil {
			return err
		}
	}
	pv := view{Title: w.brand.Text("device.new.title"), Nav: "devices", Data: deviceView{New: true, Form: p.form, Errors: p.errs}}
	pv.Error = p.errs[""]
	if pv.Error == "" {
		pv.Error = w.brand.Text("device.formErrors")
	}
	w.render(rw, http.StatusOK, "device", v, pv)
	return nil
}
