package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reflector-dev/reflector/internal/ops"
	"github.com/reflector-dev/reflector/store"
)

// auditRig is a web UI over a store of its own, with the session of the
// user named by the request's X-Test-User header.
func auditRig(t *testing.T) (*Web, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	o, err := ops.New(ops.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{
		Ops: o,
		Session: func(r *http.Request) (store.Credential, string, bool, error) {
			name := r.Header.Get("X-Test-User")
			if name == "" {
				return store.Credential{}, "", false, nil
			}
			u, err := st.User(name)
			return store.Credential{User: u}, "csrf", err == nil, err
		},
		SameOrigin: func(*http.Request) bool { return true },
		DeviceURL:  func(d string) string { return "https://" + d + ".localhost/" },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		name string
		role store.Role
	}{{"root", store.RoleAdmin}, {"alice", store.RoleUser}} {
		if err := st.AddUser(u.name, "password-"+u.name, u.role, nil); err != nil {
			t.Fatal(err)
		}
	}
	return w, st
}

func get(t *testing.T, w *Web, user, path string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://localhost"+path, nil)
	r.Header.Set("X-Test-User", user)
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, r)
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

var seqRE = regexp.MustCompile(`data-seq="(\d+)"`)

func TestAuditPagesNewestFirstAndKeepsFilters(t *testing.T) {
	w, st := auditRig(t)
	base := time.Now().Add(-time.Hour)
	for i := range 60 {
		st.Audit(store.AuditEvent{Time: base.Add(time.Duration(i) * time.Second), Kind: store.AuditLogin, OK: true, User: "alice"})
	}
	st.Audit(store.AuditEvent{Kind: store.AuditStream, OK: true, User: "bob", Device: "pump-1", Port: 22,
		BytesUp: 1536, BytesDown: 10, Duration: 2500 * time.Millisecond})

	code, body := get(t, w, "root", "/audit?kind=login&user=alice")
	if code != http.StatusOK {
		t.Fatalf("status %d:\n%s", code, body)
	}
	seqs := seqRE.FindAllStringSubmatch(body, -1)
	if len(seqs) != auditPage {
		t.Fatalf("%d events on the first page, want %d", len(seqs), auditPage)
	}
	if seqs[0][1] <= seqs[1][1] && len(seqs[0][1]) == len(seqs[1][1]) {
		t.Errorf("not newest first: %s then %s", seqs[0][1], seqs[1][1])
	}
	older := regexp.MustCompile(`href="(/audit\?[^"]*before=\d+[^"]*)" rel="next"`).FindStringSubmatch(body)
	if older == nil {
		t.Fatalf("no Older link:\n%s", body)
	}
	link := strings.ReplaceAll(older[1], "&amp;", "&")
	if !strings.Contains(link, "kind=login") || !strings.Contains(link, "user=alice") {
		t.Errorf("Older link %q drops the filters", link)
	}
	_, body = get(t, w, "root", link)
	if n := len(seqRE.FindAllString(body, -1)); n != 10 {
		t.Errorf("%d events on the second page, want 10", n)
	}
	if strings.Contains(body, `rel="next"`) || !strings.Contains(body, ">Newest</a>") {
		t.Errorf("second page's links wrong:\n%s", body)
	}

	_, body = get(t, w, "root", "/audit?kind=stream&device=pump-1")
	for _, want := range []string{"↑ 1.5 KiB", "↓ 10 B", "2.5 s", "pump-1"} {
		if !strings.Contains(body, want) {
			t.Errorf("stream row lacks %q", want)
		}
	}
}

func TestAuditUserSeesOwnEventsOnly(t *testing.T) {
	w, st := auditRig(t)
	st.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: true, User: "alice", Reason: "alice-event"})
	st.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: false, User: "bob", Reason: "bob-event"})
	_, body := get(t, w, "alice", "/audit")
	if !strings.Contains(body, "alice-event") || strings.Contains(body, "bob-event") {
		t.Errorf("alice's audit page:\n%s", body)
	}
	if strings.Contains(body, `id="user"`) {
		t.Error("a user's page offers a user filter")
	}
	// Asking for somebody else's events shows her own, not theirs.
	if _, body = get(t, w, "alice", "/audit?user=bob"); strings.Contains(body, "bob-event") {
		t.Error("alice saw bob's event")
	}
	if _, body = get(t, w, "root", "/audit"); !strings.Contains(body, "bob-event") {
		t.Error("the admin does not see bob's event")
	}
}

func TestAuditBadFilterIsShownByItsField(t *testing.T) {
	w, _ := auditRig(t)
	for _, tc := range []struct{ query, field string }{
		{"kind=nonsense", "kind"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00", "until"},
		{"range=1y", "range"},
	} {
		code, body := get(t, w, "root", "/audit?"+tc.query)
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d", tc.query, code)
		}
		if !regexp.MustCompile(`id="` + tc.field + `"[^>]*aria-invalid="true"`).MatchString(body) {
			t.Errorf("%s: field %s not marked:\n%s", tc.query, tc.field, body)
		}
	}
}

func TestAuditTimeFilter(t *testing.T) {
	w, st := auditRig(t)
	old := time.Now().UTC().Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	st.Audit(store.AuditEvent{Time: old, Kind: store.AuditLogin, OK: true, User: "alice", Reason: "ten-days-ago"})
	st.Audit(store.AuditEvent{Kind: store.AuditLogin, OK: true, User: "alice", Reason: "just-now"})
	_, body := get(t, w, "root", "/audit?range=1h")
	if !strings.Contains(body, "just-now") || strings.Contains(body, "ten-days-ago") {
		t.Errorf("last hour:\n%s", body)
	}
	_, body = get(t, w, "root", "/audit?since="+old.Add(-time.Hour).Format(auditTimeLayout)+"&until="+old.Add(time.Hour).Format(auditTimeLayout))
	if strings.Contains(body, "just-now") || !strings.Contains(body, "ten-days-ago") {
		t.Errorf("since/until:\n%s", body)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		850 * time.Millisecond:            "850 ms",
		12300 * time.Millisecond:          "12.3 s",
		4*time.Minute + 10*time.Second:    "4m10s",
		2*time.Hour + 3*time.Minute + 4e9: "2h3m",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
}
