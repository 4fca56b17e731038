package agent

import (
	"fmt"
	"net"

	"github.com/xtaci/smux"

	"github.com/reflector-dev/reflector/tunnel"
	"github.com/reflector-dev/reflector/tunnel/smuxsession"
)

// session is the agent's end of smux over a tunnel's connection: it hands
// out the streams the reflector opens until the session ends, and then
// why it ended. Two ends implement it: tunnel/smuxsession's (the default),
// whose frames go between the connection and the streams with no goroutine
// between, and stock xtaci/smux's (Options.StockSmux), which hands every
// frame to its send goroutine and every received one to the reader.
type session interface {
	acceptStream() (net.Conn, error)
	Close() error
}

// newSession starts the agent's end of smux over conn, the smux client.
func (a *Agent) newSession(conn net.Conn) (session, error) {
	if a.opts.StockSmux {
		s, err := smux.Client(conn, tunnel.MuxConfig())
		if err != nil { // only on a bad config, which MuxConfig is not
			return nil, fmt.Errorf("start smux session: %w", err)
		}
		return &stockSession{sess: s, conn: conn}, nil
	}
	s := smuxsession.New(conn, tunnel.AgentMuxConfig())
	go s.Run() // its error is what acceptStream returns once the session ended
	return ourSession{s}, nil
}

// ourSession is a tunnel/smuxsession session as the smux client.
type ourSession struct{ s *smuxsession.Session }

func (o ourSession) acceptStream() (net.Conn, error) {
	st, err := o.s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (o ourSession) Close() error { return o.s.Close() }

// stockSession is a stock smux session; conn is its connection, for
// guardStream.
type stockSession struct {
	sess *smux.Session
	conn net.Conn
}

func (s *stockSession) acceptStream() (net.Conn, error) {
	st, err := s.sess.AcceptStream()
	if err != nil {
		return nil, err
	}
	return guardStream(st, s.sess, s.conn), nil
}

func (s *stockSession) Close() error { return s.sess.Close() }
