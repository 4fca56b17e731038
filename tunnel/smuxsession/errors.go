package smuxsession

import (
	"errors"
	"fmt"
	"io"
	"net"
)

var (
	// ErrSessionClosed is what a stream's Read and Write return once its
	// session has ended (the agent went away, or the session was closed).
	// It wraps io.ErrClosedPipe, the error stock smux gives in that case.
	ErrSessionClosed = fmt.Errorf("smux session closed: %w", io.ErrClosedPipe)
	// ErrStreamClosed is what a stream's methods return after its Close.
	ErrStreamClosed = fmt.Errorf("smux stream closed: %w", net.ErrClosed)
	// ErrWriteClosed is what Write returns after CloseWrite.
	ErrWriteClosed = fmt.Errorf("smux stream closed for writing: %w", io.ErrClosedPipe)
	// ErrProtocol ends a session whose peer sent a frame smux v2 does not
	// allow: another version, an unknown command, a control frame with a
	// payload of the wrong length.
	ErrProtocol = errors.New("smux protocol violation")
	// ErrKeepAliveTimeout ends a session that received nothing for
	// Keeper's timeout.
	ErrKeepAliveTimeout = errors.New("smux keep-alive timeout: nothing received")
	// ErrGoAway is OpenStream's answer when the session has used up its
	// stream ids (2³¹ opens); the agent must reconnect.
	ErrGoAway = errors.New("smux stream ids exhausted")
)
