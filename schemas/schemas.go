// Package schemas embeds the JSON Schemas of every event type and version, and
// the OpenAPI documents of the HTTP APIs, so binaries carry them.
package schemas

import "embed"

// Events holds events/<aggregate type>/<EventType>.v<N>.json.
//
//go:embed events
var Events embed.FS

// OpenAPI holds openapi/<name>.yaml, the OpenAPI 3.1 document of each HTTP
// API (writer, reader). Package internal/apispec loads, serves and tests
// against them.
//
//go:embed openapi
var OpenAPI embed.FS
