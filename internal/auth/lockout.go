package auth

import (
	"fmt"
	"time"

	"github.com/reflector-dev/reflector/tunnel"
)

// LockedOutError is returned (or wrapped) when an attempt is refused because
// its user, device or address is locked out. It is a tunnel.Throttled:
// handlers answer it with tunnel.RetryLater (429 and Retry-After).
type LockedOutError struct {
	Wait time.Duration // until the lockout ends
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("too many failed attempts; retry in %ss", tunnel.RetryAfterSeconds(e.Wait))
}

// RetryAfter is how long the client must wait.
func (e *LockedOutError) RetryAfter() time.Duration { return e.Wait }
