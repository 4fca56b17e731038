// Package control holds the reflector's admin commands and the unix socket
// that carries them to a running reflector: users (add, list, set, passwd,
// rm, and TOTP enable/disable), API tokens (create, list, revoke), groups
// and their device quotas, devices (add, list, set, rotate-secret, disable,
// enable, rm), agent enrolment keys (enroll create, list, rm) and the audit
// log (audit). A running reflector holds the bbolt lock on its data
// directory, so a command typed while it runs must execute inside it: Main
// first tries <data>/control.sock, sends the arguments (and any stdin the
// command needs) as one JSON request and prints the JSON response; when
// nothing answers, it opens the store itself and runs the same command with
// no hub, so every device shows as offline. A command that asks a question
// (the first TOTP code) runs as a dialogue of such requests, with Main
// prompting between them on either path. Run is the one implementation of
// each command and serves both paths; Serve is the server side of the
// socket, which the server starts beside its listeners. A command parses
// its flags and prints; the operation itself is internal/ops's, called as
// ops.Local() (Env.Ops), the same code the REST API calls: it makes the
// change, writes it to the audit log as made by "local", and tells the
// server when access may have been taken away so it re-checks open
// streams. The socket is mode 0600 inside the 0700 data directory: whoever
// may use it may already read the database.
package control
