package httpapi

import (
	"net/http"
	"strconv"

	"github.com/tributary-es/tributary/internal/problem"
)

// DefaultMaxHeaderBytes is the header size the APIs answer with a 431
// problem above: room for large JWTs and trace headers.
const DefaultMaxHeaderBytes = 32 << 10

// ServerMaxHeaderBytes is the http.Server.MaxHeaderBytes to set for a
// LimitHeaderBytes of max: far enough above it that every request between
// the two gets the problem document.
func ServerMaxHeaderBytes(max int) int { return max + 64<<10 }

// LimitHeaderBytes answers 431 Request Header Fields Too Large, as a
// problem document (headers-too-large), to a request whose header section
// is larger than max bytes, and passes the others to next.
//
// The size is counted as the request would be written in HTTP/1.1,
// whatever the protocol it came in: the request line (method, target as
// sent, protocol, two spaces and CRLF), then "Name: value" and CRLF for each
// header field value (a header sent on several lines counts once per line),
// Host and Transfer-Encoding included (net/http takes those out of
// r.Header), and the empty line that ends the section. A client that leaves
// out the optional space after the colon sends a byte less per field than
// is counted; trailers are not counted.
//
// net/http refuses larger headers itself, before any handler runs and
// with an answer no handler can change (a plain-text 431 and a closed
// connection in HTTP/1.1, an HTML 431 in HTTP/2): past
// http.Server.MaxHeaderBytes (1 MiB when zero) plus 4096 bytes of read
// buffer in HTTP/1.1, past MaxHeaderBytes + 320 counted as RFC 9113 does
// (name, value and 32 bytes per field) in HTTP/2. So set the server's
// MaxHeaderBytes above max, e.g. max + 64 KiB: every request whose headers
// are over max but within that hard limit then gets this problem document,
// and only the grossly oversized ones get net/http's answer.
func LimitHeaderBytes(max int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := headerBytes(r, max); n > max {
			problem.Write(w, r, problem.New(http.StatusRequestHeaderFieldsTooLarge, "headers-too-large",
				"Request header fields too large",
				"the request line and header fields take more than "+strconv.Itoa(max)+
					" bytes (counted as HTTP/1.1 sends them): send fewer or shorter headers"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's header section as LimitHeaderBytes counts
// it; it stops counting once past limit.
func headerBytes(r *http.Request, limit int) int {
	target := r.RequestURI
	if target == "" { // a request made by a client, not received
		target = r.URL.RequestURI()
	}
	n := len(r.Method) + 1 + len(target) + 1 + len(r.Proto) + 2 + 2 // request line, final CRLF
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for _, te := range r.TransferEncoding {
		n += len("Transfer-Encoding: ") + len(te) + 2
	}
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + 2 + len(v) + 2
		}
		if n > limit {
			break
		}
	}
	return n
}
