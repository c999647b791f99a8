// Package schemas embeds the JSON Schemas of every event type and version, and
// the OpenAPI documents of the HTTP APIs, so binaries carry them.
package schemas

import (
	"embed"
	"io"
	"io/fs"
	"slices"
	"strings"
)

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

// EventsOf returns the part of Events that holds the schemas of the given
// aggregate types' events: a domain's share of this folder.
func EventsOf(aggregateTypes ...string) fs.FS {
	f := eventsOf{types: make(map[string]bool, len(aggregateTypes))}
	for _, t := range aggregateTypes {
		f.types[t] = true
	}
	return f
}

// eventsOf is Events with only some aggregate types' folders.
type eventsOf struct{ types map[string]bool }

func (f eventsOf) allowed(name string) bool {
	if name == "." || name == "events" {
		return true
	}
	rest, ok := strings.CutPrefix(name, "events/")
	typ, _, _ := strings.Cut(rest, "/")
	return ok && f.types[typ]
}

func (f eventsOf) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) || !f.allowed(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	file, err := Events.Open(name)
	if err != nil || name != "events" {
		return file, err
	}
	return &filteredDir{ReadDirFile: file.(fs.ReadDirFile), keep: f.types}, nil
}

// filteredDir is the events folder listing only some aggregate types.
type filteredDir struct {
	fs.ReadDirFile
	keep    map[string]bool
	entries []fs.DirEntry
	read    bool
}

func (d *filteredDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		all, err := d.ReadDirFile.ReadDir(-1)
		if err != nil {
			return nil, err
		}
		d.entries = slices.DeleteFunc(all, func(e fs.DirEntry) bool { return !d.keep[e.Name()] })
		d.read = true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	out := d.entries[:min(n, len(d.entries))]
	d.entries = d.entries[len(out):]
	return out, nil
}

func (f eventsOf) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) || !f.allowed(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	entries, err := Events.ReadDir(name)
	if err != nil || name != "events" {
		return entries, err
	}
	return slices.DeleteFunc(entries, func(e fs.DirEntry) bool { return !f.types[e.Name()] }), nil
}

// APIOf returns the parts a domain contributes to the APIs' OpenAPI
// documents: openapi/domains/<domain>/writer.yaml and reader.yaml.
func APIOf(domain string) fs.FS {
	sub, err := fs.Sub(OpenAPI, "openapi/domains/"+domain)
	if err != nil { // only for an invalid path: a bug in the caller
		panic(err)
	}
	return sub
}
