// Package apispec holds the HTTP APIs' OpenAPI 3.1 documents at run time and
// in tests: it loads and validates the documents embedded from
// schemas/openapi/<name>.yaml, serves one as JSON, and checks requests and
// responses against it.
//
// A server mounts its document:
//
//	spec, err := apispec.Handler("writer") // schemas/openapi/writer.yaml
//	if err != nil {
//		return err
//	}
//	mux.Handle("GET /openapi.json", spec)
//
// A test checks every exchange it makes against the document, either
// through an http.Client whose transport validates each request and
// response:
//
//	v := apispec.NewValidator(t, "reader")
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
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tributary-es/tributary/schemas"
)

// dir is where the documents are inside schemas.OpenAPI.
const dir = "openapi"

// Load reads schemas/openapi/<name>.yaml from the files embedded in the
// binary, resolves its references (only internal ones are allowed) and
// validates it. The document must be OpenAPI 3.1.
func Load(name string) (*openapi3.T, error) {
	file, err := fileOf(name)
	if err != nil {
		return nil, err
	}
	data, err := fs.ReadFile(schemas.OpenAPI, file)
	if err != nil {
		return nil, fmt.Errorf("apispec: no document %q: %w", name, err)
	}
	return parse(file, data)
}

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

// Handler serves the document name as JSON (application/json). The document
// is loaded, validated and encoded once, here; the handler only writes the
// bytes.
func Handler(name string) (http.Handler, error) {
	doc, err := Load(name)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("apispec: encode %s as JSON: %w", name, err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}), nil
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
