// Package throttle counts failed authentications per key (a user name, a
// client address) and locks a key out after too many: the reflector then
// answers 429 with Retry-After without checking the credential.
package throttle

import (
	"fmt"
	"strconv"
	"time"
)

// LockedOutError is returned (or wrapped) when an attempt is refused because
// its user or address is locked out. Handlers answer 429 with a Retry-After
// header of RetryAfterSeconds(RetryAfter).
type LockedOutError struct {
	RetryAfter time.Duration
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("too many failed attempts; retry in %s", RetryAfterSeconds(e.RetryAfter)+"s")
}

// RetryAfterSeconds formats d for a Retry-After header: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
