// Package tunnel owns the wire between the reflector and its device agents: a
// WebSocket adapted to net.Conn, the smux configuration both ends share, the
// stream-open header and its reply, the splice that joins a user's connection
// to a device stream, and the Hub of connected devices through which every
// other package reaches a device port (Hub.Dial). PROTOCOL.md beside this file
// describes the wire byte by byte.
package tunnel
