package store

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// API tokens and enrolment keys share one shape: a prefix (TokenPrefix,
// EnrollKeyPrefix) and unpadded base64url of 24 random bytes. The first 8
// are the public id, stored as 16 hex digits and used as the record's key;
// the other 16 (128 bits) are the secret, stored only as hashSecret of them
// and compared in constant time.
const (
	keyIDLen     = 8
	keySecretLen = 16
	// keyBodyLen is the length of the base64 part: 24 bytes, 32 characters.
	keyBodyLen = (keyIDLen + keySecretLen) * 4 / 3
)

// newRandomKey returns a fresh key string with prefix, its public id (hex)
// and its secret part (raw bytes in a string, for hashSecret).
func newRandomKey(prefix string) (key, id, secret string, err error) {
	var b [keyIDLen + keySecretLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", "", fmt.Errorf("random key: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), hex.EncodeToString(b[:keyIDLen]), string(b[keyIDLen:]), nil
}

// hasKeyShape reports whether s has the prefix and length of a key.
func hasKeyShape(prefix, s string) bool {
	return len(s) == len(prefix)+keyBodyLen && strings.HasPrefix(s, prefix)
}

// parseRandomKey splits a key string into its id (hex) and secret. It
// reports false for anything that is not exactly the shape newRandomKey
// makes; the length is checked before decoding, so an over-long input costs
// nothing.
func parseRandomKey(prefix, key string) (id, secret string, ok bool) {
	if !hasKeyShape(prefix, key) {
		return "", "", false
	}
	var b [keyIDLen + keySecretLen]byte
	// A CR or LF, which the decoder skips, leaves n short of len(b).
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(key[len(prefix):]))
	if err != nil || n != len(b) {
		return "", "", false
	}
	return hex.EncodeToString(b[:keyIDLen]), string(b[keyIDLen:]), true
}

// validKeyID reports whether id is 16 lower-case hex digits, the form in
// which ids are stored.
func validKeyID(id string) bool {
	if len(id) != 2*keyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
