package apispec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// problemContentType is the media type of RFC 9457 problem documents.
const problemContentType = "application/problem+json"

// Validator checks HTTP exchanges against one OpenAPI document. It is safe
// for concurrent use.
type Validator struct {
	name    string
	doc     *openapi3.T
	router  routers.Router
	options *openapi3filter.Options
	// problem is the document's components.schemas.Problem, if it has one:
	// the shape of the answer to a request that matches no operation.
	problem *openapi3.Schema
}

// NewValidator checks exchanges against doc (see [Assemble]), failing t
// if it cannot route by it.
func NewValidator(t testing.TB, doc *Document) *Validator {
	t.Helper()
	v, err := newValidator(doc.Name(), doc.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newValidator(name string, doc *openapi3.T) (*Validator, error) {
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apispec: route %s: %w", name, err)
	}
	v := &Validator{name: name, doc: doc, router: router, options: &openapi3filter.Options{
		AuthenticationFunc:    bearerPresent,
		IncludeResponseStatus: true,
		SkipSettingDefaults:   true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidators(stringFormats),
		},
	}}
	if doc.Components != nil && doc.Components.Schemas["Problem"] != nil {
		v.problem = doc.Components.Schemas["Problem"].Value
	}
	return v, nil
}

// bearerPresent is what the document's checks can say of a security
// requirement: an operation secured with an HTTP bearer scheme needs an
// "Authorization: Bearer <token>" header, so an exchange without one is an
// invalid request that must be refused with a 4xx. Whether the token is
// valid is the server's to decide (and its tests').
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme == nil || in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s: only HTTP bearer is known to these checks", in.SecuritySchemeName)
	}
	scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return fmt.Errorf("security scheme %s: no bearer token", in.SecuritySchemeName)
	}
	return nil
}

// stringFormats asserts the string formats kin-openapi leaves unchecked
// unless told (date-time and date it checks itself). They are given per
// validation rather than registered globally.
var stringFormats = map[string]openapi3.StringFormatValidator{
	"uuid": openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562),
	"uri": openapi3.NewCallbackValidator(func(s string) error {
		if u, err := url.Parse(s); err != nil || !u.IsAbs() {
			return fmt.Errorf("%q is not an absolute URI", s)
		}
		return nil
	}),
	"uri-reference": openapi3.NewCallbackValidator(func(s string) error {
		if _, err := url.Parse(s); err != nil {
			return fmt.Errorf("%q is not a URI reference: %w", s, err)
		}
		return nil
	}),
}

// Validate checks one exchange: req as the client sent it, with its body
// reqBody (req.Body is not read), and the response's status, header and
// body. It returns why the exchange does not follow the document, or nil.
//
//   - The request must match an operation (path and method). If it matches
//     none, the response must be a 4xx, and if the document has a schema
//     components.schemas.Problem, an application/problem+json body that
//     matches it.
//   - The response's status must be one the operation documents (or its
//     "default"), 304 included; an operation without responses fails every
//     exchange. A HEAD is checked as the GET that net/http answers it with,
//     status only.
//   - The response's headers must match the documented ones (required ones
//     present) and its body the schema of its Content-Type; a response
//     documented without content must have no body.
//   - A request the document calls invalid (parameters, headers, body) must
//     have been refused with a 4xx.
func (v *Validator) Validate(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	r := serverView(req, reqBody)
	route, params, err := v.router.FindRoute(r)
	if err != nil && r.Method == http.MethodHead {
		// net/http answers HEAD with the GET handler, headers only.
		get := r.Clone(r.Context())
		get.Method = http.MethodGet
		if route, params, err = v.router.FindRoute(get); err == nil {
			r = get
		}
	}
	if err != nil {
		return v.unmatched(status, header, body, err)
	}
	if route.Operation.Responses.Len() == 0 {
		return fmt.Errorf("operation %s %s documents no responses", route.Method, route.Path)
	}
	for k, p := range params {
		if unescaped, err := url.PathUnescape(p); err == nil {
			params[k] = unescaped
		}
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: v.options}
	var errs []error
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && (status < 400 || status > 499) {
		errs = append(errs, fmt.Errorf("the document calls the request invalid, so it must be refused with a 4xx, not %d: %w", status, err))
	}
	// ValidateResponse lets some statuses (304, redirects) and HEAD pass
	// unchecked, documented or not: the status is checked here for all.
	documented := documentedResponse(route.Operation, status)
	if documented == nil {
		errs = append(errs, fmt.Errorf("status %d is not documented for %s %s", status, route.Method, route.Path))
		return errors.Join(errs...)
	}
	if req.Method == http.MethodHead {
		return errors.Join(errs...) // no body to check, and kin-openapi checks nothing of a HEAD
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Options: v.options,
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		errs = append(errs, err)
	} else if len(documented.Content) == 0 && len(body) > 0 {
		errs = append(errs, fmt.Errorf("response %d is documented without content but has a body", status))
	}
	return errors.Join(errs...)
}

// documentedResponse is the response op documents for status (or its
// default), or nil.
func documentedResponse(op *openapi3.Operation, status int) *openapi3.Response {
	if r := op.Responses.Status(status); r != nil {
		return r.Value
	}
	if r := op.Responses.Default(); r != nil {
		return r.Value
	}
	return nil
}

// Check is Validate that fails t with the method, path, status, the reason
// and the response body. It uses t.Errorf, so it may be called from any
// goroutine while the test runs.
func (v *Validator) Check(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	t.Helper()
	if err := v.Validate(req, reqBody, status, header, body); err != nil {
		t.Errorf("%s %s answered %d, which does not follow schemas/openapi/%s.yaml:\n%v\nresponse body: %s",
			req.Method, requestTarget(req), status, v.name, err, excerpt(body))
	}
}

// Transport returns a RoundTripper that sends each request through base
// (http.DefaultTransport if nil) and checks the exchange with Check. It
// reads the whole response body and hands it on unchanged.
func (v *Validator) Transport(t testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &checkingTransport{v: v, t: t, base: base}
}

type checkingTransport struct {
	v    *Validator
	t    testing.TB
	base http.RoundTripper
}

func (c *checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		reqBody, err = io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("apispec: read the request body: %w", err)
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
	}
	res, err := c.base.RoundTrip(req)
	if err != nil {
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("apispec: read the response body: %w", err)
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	c.v.Check(c.t, req, reqBody, res.StatusCode, res.Header, body)
	return res, nil
}

// unmatched checks the answer to a request that matches no operation.
func (v *Validator) unmatched(status int, header http.Header, body []byte, routeErr error) error {
	if status < 400 || status > 499 {
		return fmt.Errorf("the request matches no operation of the document (%v), so it must be refused with a 4xx, not %d", routeErr, status)
	}
	if v.problem == nil {
		return nil
	}
	if mediaType, _, err := mime.ParseMediaType(header.Get("Content-Type")); err != nil || mediaType != problemContentType {
		return fmt.Errorf("the request matches no operation of the document (%v): the %d must be %s, not %q",
			routeErr, status, problemContentType, header.Get("Content-Type"))
	}
	var value any
	if err := json.Unmarshal(body, &value); err != nil {
		return fmt.Errorf("the request matches no operation of the document (%v): the %d is not JSON: %w", routeErr, status, err)
	}
	opts := append([]openapi3.SchemaValidationOption{openapi3.VisitAsResponse(), openapi3.EnableJSONSchema2020()}, v.options.SchemaValidationOptions...)
	if err := v.problem.VisitJSON(value, opts...); err != nil {
		return fmt.Errorf("the request matches no operation of the document (%v): the %d does not match components.schemas.Problem: %w", routeErr, status, err)
	}
	return nil
}

// serverView is req as the server saw it, with reqBody as its body: a path
// sent verbatim (URL.Opaque) is the path, uncleaned.
func serverView(req *http.Request, reqBody []byte) *http.Request {
	r := req.Clone(context.Background())
	if strings.HasPrefix(r.URL.Opaque, "/") {
		if u, err := url.Parse(r.URL.Opaque); err == nil {
			r.URL.Path, r.URL.RawPath, r.URL.Opaque = u.Path, u.RawPath, ""
			if u.RawQuery != "" {
				r.URL.RawQuery = u.RawQuery
			}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	r.ContentLength = int64(len(reqBody))
	r.GetBody = nil
	return r
}

func requestTarget(req *http.Request) string {
	if req.URL.Opaque != "" {
		return req.URL.Opaque
	}
	return req.URL.RequestURI()
}

// excerpt is the start of a body for a failure message.
func excerpt(body []byte) string {
	const max = 2000
	if len(body) <= max {
		return string(body)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(body[cut]) {
		cut--
	}
	return string(body[:cut]) + fmt.Sprintf("… (%d bytes)", len(body))
}

// CloseIdleConnections lets httptest.Server.Close close the base transport's
// idle connections.
func (c *checkingTransport) CloseIdleConnections() {
	if t, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
