// Package apispec holds the HTTP APIs' OpenAPI 3.1 documents at run time and
// in tests: it assembles each from the platform's part embedded from
// schemas/openapi/<name>.yaml and the domains' fragments, validates it,
// serves it as JSON, and checks requests and responses against it.
//
// The registry of domains assembles the documents (registry.Registry.API);
// a server mounts one:
//
//	mux.Handle("GET /openapi.json", doc.Handler())
//
// A test checks every exchange it makes against the document, either
// through an http.Client whose transport validates each request and
// response:
//
//	v := apispec.NewValidator(t, doc)
//	srv := httptest.NewServer(handler)
//	client := srv.Client()
//	client.Transport = v.Transport(t, client.Transport)
//	// every client.Do(...) is now checked; a mismatch fails t (t.Errorf)
//
// or, for a handler called directly with an httptest.ResponseRecorder:
//
//	rec := httptest.NewRecorder()
//	handler.ServeHTTP(rec, req)
//	v.Check(t, req, reqBody, rec.Code, rec.Header(), rec.Body.Bytes())
//
// What a check demands is in [Validator.Validate]: in short, the response's
// status must be documented for the operation and its headers and body must
// match; a request the document calls invalid must have been refused with a
// 4xx; a request that matches no operation must get a 4xx problem document.
package apispec

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tributary-es/tributary/schemas"
)

// dir is where the documents are inside schemas.OpenAPI.
const dir = "openapi"

// parse loads and validates the OpenAPI 3.1 document data read from file.
func parse(file string, data []byte) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("apispec: load %s: %w", file, err)
	}
	if v := doc.OpenAPIMajorMinor(); v != "3.1" {
		return nil, fmt.Errorf("apispec: %s is OpenAPI %q, want 3.1", file, doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("apispec: %s is not a valid OpenAPI 3.1 document: %w", file, err)
	}
	return doc, nil
}

// fileOf is the path of document name in schemas.OpenAPI.
func fileOf(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return "", fmt.Errorf("apispec: %q is not a document name (want e.g. \"writer\" for schemas/openapi/writer.yaml)", name)
	}
	return path.Join(dir, name+".yaml"), nil
}

// names lists the embedded documents.
func names() ([]string, error) {
	files, err := fs.Glob(schemas.OpenAPI, dir+"/*.yaml")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(files))
	for _, f := range files {
		out = append(out, strings.TrimSuffix(path.Base(f), ".yaml"))
	}
	return out, nil
}
