// Package agent is the device side of Reflector: a small program on or next
// to a device that dials out to the reflector over HTTPS, upgrades to a
// WebSocket carrying smux, and for every stream the reflector opens dials the
// device-local port named in the stream's header, if that port is on its
// allow-list. It opens no inbound port. Its configuration (Config) is read
// from flags or from an existing macchina.io REMOTE WebTunnelAgent.properties
// file, unchanged, so a fleet can switch agents without writing new
// configuration: ParseProperties reads such files the way POCO does. A
// device without a secret can enrol itself with an enrolment key instead
// (Config.EnrollKey): it receives its own secret from the reflector and
// keeps it in a state file (Config.StateFile) for every later start.
package agent
