package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"

	"github.com/reflector-dev/reflector/admin/api"
)

// documentedRoutes is every method and path of the OpenAPI document.
func documentedRoutes(t *testing.T) [][2]string {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.OpenAPIDocument())
	if err != nil {
		t.Fatal(err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	var out [][2]string
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			out = append(out, [2]string{strings.ToUpper(method), path})
		}
	}
	return out
}

func sortedRoutes(rs [][2]string) [][2]string {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b [2]string) int { return strings.Compare(a[1]+" "+a[0], b[1]+" "+b[0]) })
	return rs
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	served, documented := sortedRoutes(api.ServedRoutes()), sortedRoutes(documentedRoutes(t))
	for _, rt := range served {
		if !slices.Contains(documented, rt) {
			t.Errorf("%s %s is served but not in openapi.json", rt[0], rt[1])
		}
	}
	for _, rt := range documented {
		if !slices.Contains(served, rt) {
			t.Errorf("%s %s is in openapi.json but not served", rt[0], rt[1])
		}
	}
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	v, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("openapi.json: %s: %s %v", e.Message, e.Reason, e.SchemaValidationErrors)
		}
	}
}

// Every documented route answers over real TLS (not 404 or 405 for want of
// a handler), and the document itself is served without credentials.
func TestEveryDocumentedRouteIsServed(t *testing.T) {
	r := newRig(t)
	for _, rt := range documentedRoutes(t) {
		path := strings.NewReplacer("{id}", "nosuch", "{name}", "nosuch", "{streamId}", "0000000000000000").Replace(rt[1])
		status, body, _ := r.call(rt[0], path, "", nil)
		if status == http.StatusMethodNotAllowed || (status == http.StatusNotFound && strings.Contains(string(body), "no such API path")) {
			t.Errorf("%s %s: %d %s", rt[0], rt[1], status, body)
		}
	}
	status, body, hdr := r.call(http.MethodGet, api.Prefix+"/openapi.json", "", nil)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") || !strings.Contains(string(body), `"openapi": "3.1.0"`) {
		t.Errorf("GET openapi.json: %d %s", status, hdr.Get("Content-Type"))
	}
}
