package httpapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readRaw parses a raw HTTP/1.1 request as a server does, and returns it
// with the size of its header section on the wire.
func readRaw(t *testing.T, raw string) (*http.Request, int) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	end := strings.Index(raw, "\r\n\r\n")
	if end < 0 {
		t.Fatalf("%q has no end of headers", raw)
	}
	return r, end + 4
}

// The count is the header section's size as an HTTP/1.1 client writes it.
func TestHeaderBytesIsTheWireSize(t *testing.T) {
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /v1/streams/account/a1?after=3&limit=10 HTTP/1.1\r\nHost: writer.example:8080\r\n\r\n",
		"POST /v1/accounts/a1/deposits HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\nContent-Length: 2\r\n" +
			"Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig\r\nIdempotency-Key: k1\r\n\r\n{}",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Many: 1\r\nX-Many: 2\r\nX-Many: three\r\nAccept: */*\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET http://x/absolute?q HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n", // no Host
		"GET / HTTP/1.1\r\nHost: x\r\nX-Empty: \r\n\r\n",
	} {
		r, want := readRaw(t, raw)
		if got := headerBytes(r, 1<<20); got != want {
			t.Errorf("%q: counted %d bytes, want %d", raw, got, want)
		}
	}
}

func TestLimitHeaderBytesAnswers431Problem(t *testing.T) {
	const max = 200
	reached := 0
	h := LimitHeaderBytes(max, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.WriteHeader(http.StatusNoContent)
	}))
	// A request whose header section is exactly size bytes.
	request := func(size int) *http.Request {
		head := "GET /v1/things HTTP/1.1\r\nHost: x\r\nX-Pad: "
		pad := size - len(head) - len("\r\n\r\n")
		r, n := readRaw(t, head+strings.Repeat("p", pad)+"\r\n\r\n")
		if n != size {
			t.Fatalf("built %d bytes, want %d", n, size)
		}
		return r
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, request(max))
	if rec.Code != http.StatusNoContent || reached != 1 {
		t.Fatalf("headers of exactly %d bytes: status %d, handler reached %d times", max, rec.Code, reached)
	}

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, request(max+1))
	if reached != 1 {
		t.Fatal("the handler was reached with headers over the limit")
	}
	checkHeadersTooLarge(t, rec.Code, rec.Header(), rec.Body.Bytes())
}

func checkHeadersTooLarge(t *testing.T, status int, header http.Header, body []byte) {
	t.Helper()
	if status != http.StatusRequestHeaderFieldsTooLarge || header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d, content type %q, want 431 application/problem+json: %s", status, header.Get("Content-Type"), body)
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p["type"] != "https://tributary.dev/problems/headers-too-large" || p["status"] != float64(431) ||
		p["title"] == "" || p["detail"] == "" || p["instance"] != "/v1/things" {
		t.Fatalf("problem %v", p)
	}
}

// Behind a server whose MaxHeaderBytes is max + 64 KiB, as the doc comment
// advises, every request over max up to net/http's own limit gets the
// problem document, in HTTP/1.1 and HTTP/2; past that limit net/http
// answers by itself.
func TestLimitHeaderBytesBehindAServer(t *testing.T) {
	const max = 16 << 10
	const serverMax = max + 64<<10
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, http2 := range []bool{false, true} {
		srv := httptest.NewUnstartedServer(LimitHeaderBytes(max, next))
		srv.Config.MaxHeaderBytes = serverMax
		if http2 {
			srv.EnableHTTP2 = true
			srv.StartTLS()
		} else {
			srv.Start()
		}
		client := srv.Client()
		send := func(pad int) (int, http.Header, []byte, error) {
			t.Helper()
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/things", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Pad", strings.Repeat("p", pad))
			res, err := client.Do(req)
			if err != nil {
				return 0, nil, nil, err
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if wantProto := map[bool]int{false: 1, true: 2}[http2]; res.ProtoMajor != wantProto {
				t.Fatalf("answered in %s, want HTTP/%d", res.Proto, wantProto)
			}
			return res.StatusCode, res.Header, body, nil
		}
		if status, _, body, err := send(max / 2); err != nil || status != http.StatusNoContent {
			t.Fatalf("HTTP/2 %v: small headers answered %d, %v: %s", http2, status, err, body)
		}
		for _, pad := range []int{max, max + 1000, serverMax - 1000} {
			status, header, body, err := send(pad)
			if err != nil {
				t.Fatalf("HTTP/2 %v, pad %d: %v", http2, pad, err)
			}
			checkHeadersTooLarge(t, status, header, body)
		}
		// Past the server's own limit, net/http answers without a problem
		// document (HTTP/1.1), or the server advertises its limit and Go's
		// client does not even send the request (HTTP/2): the reason to
		// keep the server's limit well above max.
		status, header, _, err := send(serverMax + 8<<10)
		switch {
		case http2 && err == nil:
			t.Errorf("HTTP/2: past the server's limit: sent, answered %d", status)
		case !http2 && (err != nil || status != http.StatusRequestHeaderFieldsTooLarge || header.Get("Content-Type") == "application/problem+json"):
			t.Errorf("HTTP/1.1: past the server's limit: status %d, %q, %v; want net/http's own 431", status, header.Get("Content-Type"), err)
		}
		srv.Close()
	}
}
