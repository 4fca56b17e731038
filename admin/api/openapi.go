package api

import (
	_ "embed"
	"net/http"

	"github.com/reflector-dev/reflector/internal/ops"
)

// openAPIDocument is the OpenAPI 3.1 description of the API: written by
// hand, the source of truth that the tests hold the routes and every
// response they see to.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPIDocument returns the OpenAPI document (the caller must not
// modify it).
func OpenAPIDocument() []byte { return openAPIDocument }

func serveOpenAPI(w http.ResponseWriter, r *http.Request, _ ops.Caller) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDocument)
	return nil
}
