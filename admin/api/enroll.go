package api

import (
	"net/http"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// enrollKeyJSON is an enrolment key as the API shows it; never the key.
type enrollKeyJSON struct {
	ID      string     `json:"id"`
	Group   string     `json:"group"`
	Max     int        `json:"max"` // 0: no limit
	Uses    int        `json:"uses"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"` // absent: never
}

func newEnrollKeyJSON(k store.EnrollKey) enrollKeyJSON {
	return enrollKeyJSON{ID: k.ID, Group: k.Group, Max: k.Max, Uses: k.Uses, Created: k.Created.UTC(), Expires: optTime(k.Expires)}
}

func (a *API) enrollRoutes() []route {
	return []route{
		{method: http.MethodGet, path: Prefix + "/enrollment-keys", serve: a.listEnrollKeys},
		{method: http.MethodPost, path: Prefix + "/enrollment-keys", serve: a.createEnrollKey},
		{method: http.MethodDelete, path: Prefix + "/enrollment-keys/{id}", serve: a.removeEnrollKey},
	}
}

func (a *API) listEnrollKeys(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	keys, err := a.ops.EnrollKeys(ctx(r), c)
	if err != nil {
		return err
	}
	out := page[enrollKeyJSON]{Items: make([]enrollKeyJSON, len(keys))}
	for i, k := range keys {
		out.Items[i] = newEnrollKeyJSON(k)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// newEnrollKeyRequest is POST /enrollment-keys's body.
type newEnrollKeyRequest struct {
	Group string `json:"group"`
	Max   int    `json:"max"` // absent or 0: no limit
	// Expires is an RFC 3339 time; NoExpiry makes a key that never
	// expires; with neither, the key works for ops.DefaultEnrollLifetime.
	Expires  string `json:"expires"`
	NoExpiry bool   `json:"noExpiry"`
}

// newEnrollKeyAnswer is POST /enrollment-keys's answer: the key, shown
// once, and the command that enrols a device with it.
type newEnrollKeyAnswer struct {
	EnrollKey    enrollKeyJSON `json:"enrollmentKey"`
	Key          string        `json:"key"`
	AgentCommand string        `json:"agentCommand"`
}

func (a *API) createEnrollKey(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	var req newEnrollKeyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Group == "" {
		return invalid("group", "group is required: the group enrolled devices join")
	}
	expires, err := parseTime("expires", req.Expires)
	switch {
	case err != nil:
		return err
	case req.NoExpiry && !expires.IsZero():
		return invalid("noExpiry", "give expires or noExpiry, not both")
	case req.NoExpiry:
	case expires.IsZero():
		expires = time.Now().Add(ops.DefaultEnrollLifetime)
	}
	key, rec, err := a.ops.CreateEnrollKey(ctx(r), c, store.EnrollKey{Group: req.Group, Max: req.Max, Expires: expires})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, newEnrollKeyAnswer{EnrollKey: newEnrollKeyJSON(rec), Key: key, AgentCommand: a.ops.EnrollAgentLine(key)})
	return nil
}

func (a *API) removeEnrollKey(w http.ResponseWriter, r *http.Request, c ops.Caller) error {
	if err := a.ops.RemoveEnrollKey(ctx(r), c, r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}
