package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/store"
)

// enrollKey is an enrolment key as the API answers it.
type enrollKey struct {
	ID      string     `json:"id"`
	Group   string     `json:"group"`
	Max     int        `json:"max"`
	Uses    int        `json:"uses"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires"`
}

type enrollKeyResult struct {
	EnrollKey    enrollKey `json:"enrollmentKey"`
	Key          string    `json:"key"`
	AgentCommand string    `json:"agentCommand"`
}

func TestEnrollmentKeyRoutesAreForAdmins(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.addUser("alice", store.RoleUser, "plant")
	reqs := []req{
		{http.MethodGet, api.Prefix + "/enrollment-keys", nil},
		{http.MethodPost, api.Prefix + "/enrollment-keys", map[string]any{"group": "plant"}},
		{http.MethodDelete, api.Prefix + "/enrollment-keys/0000000000000000", nil},
	}
	requireAuthentication(t, r, reqs...)
	requireAdmin(t, r, r.token("alice"), reqs...)
}

func TestCreateEnrollmentKeyAnswersTheKeyAndTheAgentCommand(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	var got enrollKeyResult
	before := time.Now()
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/enrollment-keys", r.adminToken, map[string]any{"group": "plant", "max": 10}, &got)
	k := got.EnrollKey
	if k.Group != "plant" || k.Max != 10 || k.Uses != 0 || k.ID == "" {
		t.Errorf("key %+v", k)
	}
	// A day by default, as the CLI's.
	if k.Expires == nil || k.Expires.Before(before.Add(24*time.Hour-time.Minute)) || k.Expires.After(time.Now().Add(24*time.Hour)) {
		t.Errorf("expires %v, want in 24h", k.Expires)
	}
	if !strings.HasPrefix(got.Key, "rfe_") || !strings.Contains(got.AgentCommand, got.Key) || !strings.Contains(got.AgentCommand, "DEVICE-ID") {
		t.Errorf("key %q, agent command %q", got.Key, got.AgentCommand)
	}

	var p struct {
		Items []enrollKey `json:"items"`
	}
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/enrollment-keys", r.adminToken, nil, &p)
	if len(p.Items) != 1 || p.Items[0].ID != k.ID {
		t.Errorf("listing %+v", p.Items)
	}
}

func TestEnrollmentKeyExpiry(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	var got enrollKeyResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/enrollment-keys", r.adminToken, map[string]any{"group": "plant", "noExpiry": true}, &got)
	if got.EnrollKey.Expires != nil {
		t.Errorf("noExpiry: expires %v", got.EnrollKey.Expires)
	}
	at := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/enrollment-keys", r.adminToken, map[string]any{"group": "plant", "expires": at.Format(time.RFC3339)}, &got)
	if got.EnrollKey.Expires == nil || !got.EnrollKey.Expires.Equal(at) {
		t.Errorf("expires %v, want %v", got.EnrollKey.Expires, at)
	}
}

func TestCreateEnrollmentKeyErrorsNameTheField(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{}, "group"},
		{map[string]any{"group": "nosuch"}, "group"},
		{map[string]any{"group": "plant", "max": -1}, "max"},
		{map[string]any{"group": "plant", "expires": "soon"}, "expires"},
		{map[string]any{"group": "plant", "expires": past}, "expires"},
		{map[string]any{"group": "plant", "expires": time.Now().Add(time.Hour).Format(time.RFC3339), "noExpiry": true}, "noExpiry"},
		{map[string]any{"group": "plant", "uses": 1}, "uses"},
	} {
		r.mustFail(http.StatusBadRequest, "invalid", tc.field, http.MethodPost, api.Prefix+"/enrollment-keys", r.adminToken, tc.body)
	}
}

func TestRemoveEnrollmentKey(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	var got enrollKeyResult
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/enrollment-keys", r.adminToken, map[string]any{"group": "plant"}, &got)
	r.must(http.StatusNoContent, http.MethodDelete, api.Prefix+"/enrollment-keys/"+got.EnrollKey.ID, r.adminToken, nil, nil)
	r.mustFail(http.StatusNotFound, "not_found", "", http.MethodDelete, api.Prefix+"/enrollment-keys/"+got.EnrollKey.ID, r.adminToken, nil)
	status, data, _ := r.call(http.MethodGet, api.Prefix+"/enrollment-keys", r.adminToken, nil)
	if status != http.StatusOK || string(data) != "{\"items\":[]}\n" {
		t.Errorf("GET /enrollment-keys after removal: %d %s", status, data)
	}
}
