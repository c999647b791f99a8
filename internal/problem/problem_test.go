package problem

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestWriteIsAnRFC9457Document(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/accounts/a1/deposits", nil)
	Write(rec, req, New(412, "version-mismatch", "Version mismatch", "expected 1, at 4").With("currentVersion", 4))
	if rec.Code != 412 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": TypeBase + "version-mismatch", "title": "Version mismatch", "status": float64(412),
		"detail": "expected 1, at 4", "instance": "/v1/accounts/a1/deposits", "currentVersion": float64(4),
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// An extension member cannot overwrite a standard one.
func TestExtensionsDoNotOverrideStandardMembers(t *testing.T) {
	b, err := json.Marshal(New(400, "x", "X", "").With("status", 999).With("type", "evil"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	if got["status"] != float64(400) || got["type"] != TypeBase+"x" {
		t.Fatalf("standard members overridden: %v", got)
	}
}
