package api_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/admin/api"
	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// event is an audit event as the API answers it.
type event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	OK     bool      `json:"ok"`
	Actor  string    `json:"actor"`
	User   string    `json:"user"`
	Client string    `json:"client"`
	Group  string    `json:"group"`
	Reason string    `json:"reason"`
}

type eventPage struct {
	Items      []event `json:"items"`
	NextCursor string  `json:"nextCursor"`
}

func TestAuditNeedsAuthentication(t *testing.T) {
	r := newRig(t)
	requireAuthentication(t, r, req{http.MethodGet, api.Prefix + "/audit", nil})
}

// Pages run newest first, and a cursor is a position in the log: events
// written between pages are newer than the first page and do not shift
// the pages that follow, so every event is answered exactly once.
func TestAuditPagesAnswerEveryEventOnceWhileEventsAreWritten(t *testing.T) {
	r := newRig(t)
	const n = 23
	for i := range n {
		r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/groups", r.adminToken, map[string]any{"name": fmt.Sprintf("g%02d", i)}, nil)
	}
	var seen []string
	var seqs []uint64
	path := api.Prefix + "/audit?kind=group&limit=5"
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("the pages do not end")
		}
		var p eventPage
		r.must(http.StatusOK, http.MethodGet, path, r.adminToken, nil, &p)
		for _, e := range p.Items {
			seen = append(seen, e.Group)
			seqs = append(seqs, e.Seq)
		}
		// A new event between pages.
		r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/groups", r.adminToken, map[string]any{"name": fmt.Sprintf("new%02d", pages)}, nil)
		if p.NextCursor == "" {
			if len(p.Items) == 0 || len(p.Items) > 5 {
				t.Errorf("last page holds %d events", len(p.Items))
			}
			break
		}
		if len(p.Items) != 5 {
			t.Fatalf("a page before the last holds %d events, want 5", len(p.Items))
		}
		path = api.Prefix + "/audit?kind=group&limit=5&cursor=" + url.QueryEscape(p.NextCursor)
	}
	var want []string
	for i := n - 1; i >= 0; i-- {
		want = append(want, fmt.Sprintf("g%02d", i))
	}
	if !slices.Equal(seen, want) {
		t.Errorf("groups of the events paged: %v, want %v", seen, want)
	}
	if !slices.IsSortedFunc(seqs, func(a, b uint64) int { return int(b) - int(a) }) {
		t.Errorf("sequence numbers not newest first: %v", seqs)
	}
}

func TestAuditLastPageHasNoCursor(t *testing.T) {
	r := newRig(t)
	for _, g := range []string{"a", "b"} {
		r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/groups", r.adminToken, map[string]any{"name": g}, nil)
	}
	status, data, _ := r.call(http.MethodGet, api.Prefix+"/audit?kind=group.add&limit=2", r.adminToken, nil)
	var p eventPage
	if err := json.Unmarshal(data, &p); err != nil || status != http.StatusOK {
		t.Fatalf("%d %s", status, data)
	}
	if len(p.Items) != 2 || p.NextCursor != "" || p.Items[0].Group != "b" {
		t.Errorf("page %+v, want b then a and no cursor", p)
	}
	// Nothing matches: an empty array, not null.
	status, data, _ = r.call(http.MethodGet, api.Prefix+"/audit?device=nosuch", r.adminToken, nil)
	if status != http.StatusOK || string(data) != "{\"items\":[]}\n" {
		t.Errorf("no events: %d %s", status, data)
	}
}

func TestAuditFiltersByKindFamilyUserAndTime(t *testing.T) {
	r := newRig(t)
	r.addGroup("plant")
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "alice"}, nil)
	r.must(http.StatusOK, http.MethodPatch, api.Prefix+"/users/alice", r.adminToken, map[string]any{"groups": []string{"plant"}}, nil)
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "bob"}, nil)

	kinds := func(q string) []string {
		t.Helper()
		var p eventPage
		r.must(http.StatusOK, http.MethodGet, api.Prefix+"/audit?"+q, r.adminToken, nil, &p)
		var out []string
		for _, e := range p.Items {
			out = append(out, e.Kind+" "+e.User)
		}
		return out
	}
	if got := kinds("kind=user"); !slices.Equal(got, []string{"user.add bob", "user.set alice", "user.add alice"}) {
		t.Errorf("family user: %v", got)
	}
	if got := kinds("kind=user.&user=alice"); !slices.Equal(got, []string{"user.set alice", "user.add alice"}) {
		t.Errorf("family user. of alice: %v", got)
	}
	if got := kinds("kind=user.add&user=ALICE"); !slices.Equal(got, []string{"user.add alice"}) {
		t.Errorf("user.add of ALICE: %v", got)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	if got := kinds("kind=user&since=" + future); len(got) != 0 {
		t.Errorf("since an hour ahead: %v", got)
	}
	if got := kinds("kind=user&until=" + future); len(got) != 3 {
		t.Errorf("until an hour ahead: %v", got)
	}
}

func TestAuditParametersAreChecked(t *testing.T) {
	r := newRig(t)
	devicesCursor := base64.RawURLEncoding.EncodeToString([]byte("d1:pump"))
	for q, field := range map[string]string{
		"limit=0":                    "limit",
		"limit=1001":                 "limit",
		"limit=ten":                  "limit",
		"since=yesterday":            "since",
		"until=2026-13-01T00:00:00Z": "until",
		"kind=nosuch":                "kind",
		"cursor=%21%21":              "cursor",
		"cursor=" + devicesCursor:    "cursor",
	} {
		r.mustFail(http.StatusBadRequest, "invalid", field, http.MethodGet, api.Prefix+"/audit?"+q, r.adminToken, nil)
	}
}

func TestAUserSeesOnlyTheirOwnAuditEvents(t *testing.T) {
	r := newRig(t)
	r.addUser("alice", store.RoleUser)
	alice := r.token("alice")
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", alice, map[string]any{"name": "laptop"}, nil)
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/users", r.adminToken, map[string]any{"name": "bob"}, nil)
	r.must(http.StatusCreated, http.MethodPost, api.Prefix+"/tokens", r.adminToken, map[string]any{"name": "laptop"}, nil)

	var p eventPage
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/audit", alice, nil, &p)
	var tokenCreated bool
	for _, e := range p.Items {
		if e.User != "alice" {
			t.Errorf("alice sees an event of %q: %+v", e.User, e)
		}
		tokenCreated = tokenCreated || (e.Kind == "token.create" && e.Actor == "alice")
	}
	if !tokenCreated {
		t.Errorf("alice does not see her own token.create: %+v", p.Items)
	}
	r.mustFail(http.StatusForbidden, "forbidden", "", http.MethodGet, api.Prefix+"/audit?user=root", alice, nil)
	r.must(http.StatusOK, http.MethodGet, api.Prefix+"/audit?user=alice", alice, nil, nil)
}

// The OpenAPI document's enum of event kinds is the operations' list.
func TestOpenAPIAuditKindsAreTheOperationsKinds(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(api.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(doc.Components.Schemas["AuditEvent"].Properties["kind"].Enum))
	want := slices.Sorted(slices.Values(ops.AuditKinds))
	if !slices.Equal(got, want) {
		t.Errorf("AuditEvent.kind enum %v, want ops.AuditKinds %v", got, want)
	}
}
