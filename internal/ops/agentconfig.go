package ops

import (
	"fmt"
	"strings"

	"github.com/reflector-dev/reflector/agent"
	"github.com/reflector-dev/reflector/store"
	"github.com/reflector-dev/reflector/tunnel"
)

// What a device needs to connect: our agent's command line, or a
// WebTunnelAgent.properties for macchina.io's agent.

// DefaultAgentPort is the agent allow-list suggested for a device whose
// record names no ports: a device's web UI is the commonest thing to reach.
const DefaultAgentPort = 80

// placeholderURL stands for the reflector when the service does not know
// its public URL.
const placeholderURL = "https://REFLECTOR-HOST:8443"

// anyWebTunnelDomain is the @domain a WebTunnelAgent file gets when the
// reflector accepts any: the SDK's own all-zero default.
const anyWebTunnelDomain = "00000000-0000-0000-0000-000000000000"

// ReflectorURL is the reflector as agents and proxy clients reach it, or a
// placeholder to edit when the service does not know it.
func (s *Service) ReflectorURL() string {
	if s.cfg.ReflectorURL == "" {
		return placeholderURL
	}
	return s.cfg.ReflectorURL
}

// WebTunnelDomain is the @domain of this reflector's WebTunnelAgents (the
// domain their files name, as macchina.io's device listing shows it):
// serve --webtunnel-domain, else the SDK's all-zero default, which the
// reflector then accepts with any other.
func (s *Service) WebTunnelDomain() string {
	if s.cfg.WebTunnelDomain == "" {
		return anyWebTunnelDomain
	}
	return s.cfg.WebTunnelDomain
}

// AgentCommand is "reflector-agent --reflector URL <flags> [--fingerprint
// F]"; flags are already shell words.
func (s *Service) AgentCommand(flags ...string) string {
	line := "reflector-agent --reflector " + ShellQuote(s.ReflectorURL()) + " " + strings.Join(flags, " ")
	if s.cfg.Fingerprint != "" {
		line += " --fingerprint " + ShellQuote(s.cfg.Fingerprint)
	}
	return line
}

// AgentLine is the whole command that runs our agent for device id with
// its secret in the environment (a command line is visible to every user of
// the device). secretWord is the secret as a shell word, or a placeholder.
func (s *Service) AgentLine(id, secretWord string, ports []uint16, httpPort uint16) string {
	return agent.SecretEnv + "=" + secretWord + " " + s.AgentCommand("--device", ShellQuote(id), AgentPorts(ports, httpPort))
}

// AgentPorts is the agent's --ports for a device record: its ports, else
// its HTTP port, else the default.
func AgentPorts(ports []uint16, httpPort uint16) string {
	return "--ports " + tunnel.FormatPorts(agentPortList(ports, httpPort))
}

func agentPortList(ports []uint16, httpPort uint16) []uint16 {
	switch {
	case len(ports) > 0:
		return ports
	case httpPort != 0:
		return []uint16{httpPort}
	}
	return []uint16{DefaultAgentPort}
}

// WebTunnelProperties is a WebTunnelAgent.properties for device d with
// secret as its password: what macchina.io's agent needs to connect here.
// It holds the secret: whoever has the file is the device.
func (s *Service) WebTunnelProperties(d store.Device, secret string) string {
	domain := s.WebTunnelDomain()
	ports := agentPortList(d.Ports, d.HTTPPort)
	httpPort := d.HTTPPort
	if httpPort == 0 && len(d.Ports) == 0 {
		httpPort = DefaultAgentPort
	}
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# WebTunnelAgent.properties for device %s, made by the reflector at %s.", d.ID, s.ReflectorURL())
	line("# It holds the device's password: keep it readable by the agent only (chmod 600).")
	line("webtunnel.deviceId = %s", d.ID)
	line("webtunnel.domain = %s", domain)
	line("webtunnel.reflectorURI = %s", s.ReflectorURL())
	line("webtunnel.username = ${webtunnel.deviceId}@${webtunnel.domain}")
	line("webtunnel.password = %s", propertyValue(secret))
	line("webtunnel.host = 127.0.0.1")
	line("webtunnel.ports = %s", strings.ReplaceAll(tunnel.FormatPorts(ports), ",", ", "))
	if httpPort != 0 {
		line("webtunnel.httpPort = %d", httpPort)
	}
	if d.HTTPTLS {
		line("webtunnel.https.enable = true")
	}
	if d.Name != "" {
		line("webtunnel.deviceName = %s", propertyValue(d.Name))
	}
	line("webtunnel.connectTimeout = 10")
	if s.cfg.Fingerprint != "" {
		line("# The reflector's certificate is self-signed (%s). Give the agent", s.cfg.Fingerprint)
		line("# that certificate as its CA with tls.caLocation = FILE.pem, or, on a test")
		line("# bench only (it accepts any server), uncomment these two lines:")
		line("#tls.acceptUnknownCertificate = true")
		line("#tls.verification = none")
	}
	return b.String()
}

// propertyValue escapes a value for a POCO properties file: a backslash
// starts an escape there, and a line break would end the value.
func propertyValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
	return r.Replace(v)
}

// ShellQuote returns s as one POSIX shell word, quoting only when needed.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-") == "" {
		return s
	}
	return ShellQuoteAlways(s)
}

// ShellQuoteAlways returns s in single quotes, each ' written as '\”.
func ShellQuoteAlways(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
