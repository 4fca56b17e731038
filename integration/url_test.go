package integration

import (
	"crypto/tls"
	"net/url"
)

func urlUser(user, password string) *url.Userinfo { return url.UserPassword(user, password) }

func tlsDialInsecure(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
}
