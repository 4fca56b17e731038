// Package tunnel owns the wire between the reflector and its device agents: a
// WebSocket adapted to net.Conn, the smux configuration both ends share, the
// stream-open header and its reply, the reflector's endpoint for our agent
// (Server), the splice that joins a user's connection to a device stream
// (Join), and the Hub of connected devices of either wire kind, through
// which every other package reaches a device port (Hub.Dial). It also holds
// what both ends and both wires share: the port-list format, the client
// address of a request (ClientAddr, resolved once by the server's router)
// and the answer to a throttled client (RetryLater). The macchina.io
// WebTunnel wire is in webtunnel/, the enrolment exchange in enroll/.
// PROTOCOL.md beside this file describes the wires byte by byte.
package tunnel
