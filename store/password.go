package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Password hashing: argon2id with the OWASP minimum (19 MiB, 2 passes, 1
// lane), stored in the PHC string format
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in unpadded standard base64. Verification takes the
// parameters from the string, so the cost can be raised later without
// invalidating existing hashes.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32

	argonPrefix = "$argon2id$"

	// Adopted device secrets (see devices.go) take one pass over 8 MiB,
	// about a fifth of a password's cost (7.5 ms against 37 ms on the
	// 2-core test machine): every agent of a moved fleet is checked again
	// after each restart of the reflector, and a secret is checked far
	// more often than a person logs in. It is still memory-hard, which is
	// what makes a stolen database expensive to guess against.
	deviceArgonTime   = 1
	deviceArgonMemory = 8 * 1024 // KiB
)

// Bounds on parameters read back from a stored hash. A corrupt or hostile
// record must not make a login allocate gigabytes or spin for minutes, and
// argon2.IDKey panics on t or p of zero.
const (
	maxArgonTime    = 16
	maxArgonMemory  = 1 << 20 // KiB, 1 GiB
	minArgonSaltLen = 8
	maxArgonSaltLen = 64
	minArgonKeyLen  = 16
	maxArgonKeyLen  = 64
)

// errBadHash reports a stored hash this package cannot read. It is a fault
// in the record, not in the caller's credentials.
var errBadHash = errors.New("malformed credential hash")

// argonParams is a parsed PHC argon2id string.
type argonParams struct {
	time    uint32
	memory  uint32
	threads uint8
	salt    []byte
	key     []byte
}

// hashPassword returns the PHC-encoded argon2id hash of password with a
// fresh random salt.
func hashPassword(password string) (string, error) {
	return hashArgon2id(password, argonTime, argonMemory)
}

// hashArgon2id is hashPassword with the given passes and memory (KiB).
func hashArgon2id(password string, time, memory uint32) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, time, memory, argonThreads, argonKeyLen)
	return encodeArgon2id(argonParams{
		time: time, memory: memory, threads: argonThreads, salt: salt, key: key,
	}), nil
}

func encodeArgon2id(p argonParams) string {
	return fmt.Sprintf("%sv=%d$m=%d,t=%d,p=%d$%s$%s", argonPrefix, argon2.Version,
		p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(p.salt),
		base64.RawStdEncoding.EncodeToString(p.key))
}

// parseArgon2id parses a PHC argon2id string, checking every parameter
// against the bounds above.
func parseArgon2id(encoded string) (argonParams, error) {
	var p argonParams
	rest, ok := strings.CutPrefix(encoded, argonPrefix)
	if !ok {
		return p, fmt.Errorf("%w: not argon2id", errBadHash)
	}
	fields := strings.Split(rest, "$")
	if len(fields) != 4 {
		return p, fmt.Errorf("%w: want 4 fields after the algorithm, have %d", errBadHash, len(fields))
	}
	if fields[0] != "v="+strconv.Itoa(argon2.Version) {
		return p, fmt.Errorf("%w: unsupported version %q", errBadHash, fields[0])
	}
	var seen [3]bool // m, t, p
	for _, kv := range strings.Split(fields[1], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, fmt.Errorf("%w: parameter %q", errBadHash, kv)
		}
		var i int
		var limit uint64
		switch k {
		case "m":
			i, limit = 0, maxArgonMemory
		case "t":
			i, limit = 1, maxArgonTime
		case "p":
			i, limit = 2, 255
		default:
			return p, fmt.Errorf("%w: unknown parameter %q", errBadHash, k)
		}
		if seen[i] {
			return p, fmt.Errorf("%w: repeated parameter %q", errBadHash, k)
		}
		seen[i] = true
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 || n > limit {
			return p, fmt.Errorf("%w: parameter %s=%q out of range", errBadHash, k, v)
		}
		switch i {
		case 0:
			p.memory = uint32(n)
		case 1:
			p.time = uint32(n)
		case 2:
			p.threads = uint8(n)
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return p, fmt.Errorf("%w: want parameters m, t and p", errBadHash)
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(fields[2]); err != nil ||
		len(p.salt) < minArgonSaltLen || len(p.salt) > maxArgonSaltLen {
		return p, fmt.Errorf("%w: salt", errBadHash)
	}
	if p.key, err = base64.RawStdEncoding.Strict().DecodeString(fields[3]); err != nil ||
		len(p.key) < minArgonKeyLen || len(p.key) > maxArgonKeyLen {
		return p, fmt.Errorf("%w: key", errBadHash)
	}
	return p, nil
}

// verifyPassword reports whether password matches the encoded hash. The
// error is non-nil only when the hash itself cannot be read.
func verifyPassword(encoded, password string) (bool, error) {
	p, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// dummyPasswordHash is verified against when the user does not exist, so an
// unknown name costs the same argon2id work as a wrong password and the
// response time does not reveal which names exist. It has the current
// parameters and a key that no password produces in practice; it needs no
// hashing to make, so even the first unknown name costs one hash, not two.
var dummyPasswordHash = encodeArgon2id(argonParams{
	time:    argonTime,
	memory:  argonMemory,
	threads: argonThreads,
	salt:    make([]byte, argonSaltLen),
	key:     make([]byte, argonKeyLen),
})

// Device secrets come in two kinds, told apart by the prefix of their
// stored form:
//
//	sha256:<64 hex digits>       a secret the store generated
//	$argon2id$v=19$m=...$...$... a secret the device brought (adopted)
//
// A generated secret is 32 random bytes, so a single SHA-256 is enough to
// make the stored value useless to a reader of the database (there is
// nothing to guess), and it is cheap: agents reconnect often. An adopted
// secret — a WebTunnelAgent's password, kept when a fleet moves here — may
// be guessable, so it gets the argon2id hash of a user password, with the
// same parameters. API tokens, enrolment keys and web sessions use the
// sha256 form: their secrets are random too.
const (
	secretLen          = 32
	secretSchemeSHA256 = "sha256:"
)

// newSecret returns a fresh device secret, unpadded URL-safe base64 of
// secretLen random bytes (43 characters).
func newSecret() (string, error) {
	b := make([]byte, secretLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("device secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// hashSecret returns the stored form of a generated device secret (or of
// another random secret: a token's, a session's).
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return secretSchemeSHA256 + hex.EncodeToString(sum[:])
}

// verifySecret reports whether secret matches the stored form, of either
// scheme. The error is non-nil only when the stored form cannot be read.
// It runs argon2id without the store's gate or cache; device checks go
// through Store.verifyDeviceSecret instead.
func verifySecret(stored, secret string) (bool, error) {
	switch {
	case strings.HasPrefix(stored, argonPrefix):
		return verifyPassword(stored, secret)
	case strings.HasPrefix(stored, secretSchemeSHA256):
		want := stored[len(secretSchemeSHA256):]
		if len(want) != 2*sha256.Size {
			return false, fmt.Errorf("%w: sha256 digest length %d", errBadHash, len(want))
		}
		sum := sha256.Sum256([]byte(secret))
		got := hex.EncodeToString(sum[:])
		return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1, nil
	default:
		// The stored value is not quoted into the error: it is a credential.
		return false, fmt.Errorf("%w: unknown secret scheme", errBadHash)
	}
}

// dummySecretHash plays the role of dummyPasswordHash for unknown device ids.
var dummySecretHash = hashSecret("reflector-dummy-secret")
