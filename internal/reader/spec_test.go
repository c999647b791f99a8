package reader_test

import (
	"net/http"
	"testing"
)

// specHandler and responseChecker are placeholders until apispec lands.
func specHandler(t testing.TB) http.Handler { return http.NotFoundHandler() }

func responseChecker(t testing.TB) func(*http.Request, []byte, *http.Response, []byte) {
	return func(*http.Request, []byte, *http.Response, []byte) {}
}
