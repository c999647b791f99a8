// Package schemas embeds the JSON Schemas of every event type and version, and
// the OpenAPI documents of the HTTP APIs, so binaries carry them.
package schemas

import "embed"

// Events holds events/<aggregate type>/<EventType>.v<N>.json.
//
//go:embed events
var Events embed.FS
