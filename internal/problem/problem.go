// Package problem writes RFC 9457 problem details (application/problem+json).
package problem

import (
	"encoding/json"
	"net/http"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypeBase prefixes the type URI of every problem Tributary reports.
const TypeBase = "https://tributary.dev/problems/"

// Problem is an RFC 9457 problem document. Extra holds extension members
// such as "currentVersion".
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Extra    map[string]any `json:"-"`
}

// New returns a problem of the given status whose type is TypeBase+code.
func New(status int, code, title, detail string) *Problem {
	return &Problem{Type: TypeBase + code, Title: title, Status: status, Detail: detail}
}

// With adds an extension member and returns p.
func (p *Problem) With(name string, value any) *Problem {
	if p.Extra == nil {
		p.Extra = make(map[string]any)
	}
	p.Extra[name] = value
	return p
}

// MarshalJSON flattens the extension members beside the standard ones.
func (p *Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 5+len(p.Extra))
	for k, v := range p.Extra {
		m[k] = v
	}
	m["type"], m["title"], m["status"] = p.Type, p.Title, p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Instance != "" {
		m["instance"] = p.Instance
	}
	return json.Marshal(m)
}

// Write sends p as the response, with Instance set to the request path if empty.
func Write(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	body, err := json.Marshal(p)
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(body)
}
