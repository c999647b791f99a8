package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHealthcheckPassesOnlyWhenEveryURLAnswers2xx(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"ready", []string{ok.URL}, true},
		{"not ready", []string{down.URL}, false},
		{"one of two not ready", []string{ok.URL, down.URL}, false},
		{"nothing listens", []string{"-timeout", "500ms", closed.URL}, false},
		{"no URL", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			if (err == nil) != tt.ok {
				t.Fatalf("run(%q) = %v, want ok=%v", tt.args, err, tt.ok)
			}
		})
	}
}
