package tunnel

import (
	"crypto/sha256"
	"encoding/hex"
)

// Fingerprint is the pin of a certificate, given in DER: "sha256:" and the
// lower-case hex of its SHA-256. The reflector prints its certificate's pin
// in this form and the agent's --fingerprint takes it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}
