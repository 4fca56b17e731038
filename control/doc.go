// Package control holds the reflector's admin commands (user add/list/rm,
// device add/list/rm) and the unix socket that carries them to a running
// reflector. A running reflector holds the bbolt lock on its data directory,
// so a command typed while it runs must execute inside it: Main first tries
// <data>/control.sock, sends the arguments (and any stdin the command needs)
// as one JSON request and prints the JSON response; when nothing answers, it
// opens the store itself and runs the same command with no hub, so every
// device shows as offline. Run is the one implementation of each command and
// serves both paths; Serve is the server side of the socket, which
// cmd/reflector starts beside its listeners. The socket is mode 0600 inside
// the 0700 data directory: whoever may use it may already read the database.
package control
