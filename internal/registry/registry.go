// Package registry is the list of domains a build of Tributary serves, and
// what the platform's parts take from it: the writer its aggregate types,
// command routes, event schemas and upcasters; the relay the aggregate
// types whose events it forwards; the projector the projections it can run
// (the correlation index over every aggregate type among them); the reader
// its query routes. A domain is one package that returns a Domain; a build
// lists its domains in one place (package domains) and hands them to New,
// which refuses a domain registered half-way.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
	"regexp"
	"slices"
	"strings"

	"github.com/tributary-es/tributary/internal/aggregate"
	"github.com/tributary-es/tributary/internal/apispec"
	"github.com/tributary-es/tributary/internal/log"
	"github.com/tributary-es/tributary/internal/log/kafka"
	"github.com/tributary-es/tributary/internal/reader"
	"github.com/tributary-es/tributary/internal/readmodels"
	"github.com/tributary-es/tributary/internal/readmodels/correlation"
	"github.com/tributary-es/tributary/internal/writer"
)

// Domain is everything one domain brings to the platform.
type Domain struct {
	// Name names the domain in errors and documents, e.g. "accounts".
	Name string
	// Aggregates are the domain's aggregate types (aggregate.Type values).
	Aggregates []aggregate.Kind
	// Events holds the JSON Schemas of the domain's events, every version:
	// events/<aggregate type>/<EventType>.v<N>.json.
	Events fs.FS
	// Upcasters lift the payloads of the domain's older event versions.
	Upcasters []Upcaster
	// Commands are the writer's routes of the domain's commands
	// (writer.Command).
	Commands []writer.Route
	// Projections are the read models the projector can keep for the
	// domain.
	Projections []readmodels.Projection
	// Queries are the reader's routes over the domain's read models
	// (reader.Versioned, reader.Handle).
	Queries []reader.Route
	// Processes are the domain's process managers: the writer runs them.
	Processes []Process
	// API holds the domain's parts of the APIs' OpenAPI documents:
	// writer.yaml, documenting its commands, and reader.yaml, its queries
	// (apispec.Fragment says what a part holds).
	API fs.FS
}

// Process is a process manager: it reacts to events by running commands.
// The writer runs every registered one (writer serve, or writer processes
// alone), each in its own consumer group; the managers of a cluster share
// it, and Kafka's partitions spread the work over them.
type Process struct {
	// Name names it: its consumer group is <topic prefix>.<Name>.
	Name string
	// New makes it over deps.
	New func(deps ProcessDeps) (ProcessRunner, error)
}

// ProcessDeps is what the writer gives a process manager.
type ProcessDeps struct {
	// Handlers run its commands: in a process that serves the API too, the
	// API's (one cache of states and one lock per aggregate for both).
	Handlers *aggregate.Handlers
	// Client holds the Kafka connection options (brokers, TLS, SASL,
	// client id).
	Client []kgo.Opt
	// Topics names the event topics.
	Topics kafka.Topics
	// Group is its consumer group.
	Group string
	// SessionTimeout is how soon the partitions of a manager that died move
	// to the others.
	SessionTimeout time.Duration
	// Upcasters lift the events it reads to their current versions.
	Upcasters *log.Upcasters
	// TracerProvider makes its spans; nil: none.
	TracerProvider trace.TracerProvider
	Logger         *slog.Logger
}

// ProcessRunner is a process manager made: it runs until ctx ends.
type ProcessRunner interface {
	Run(ctx context.Context) error
}

// Upcaster lifts payloads of one event type from schema version From to
// From+1.
type Upcaster struct {
	AggregateType, EventType string
	From                     int
	Upcast                   log.UpcastFunc
}

// Registry is a build's domains, checked.
type Registry struct {
	domains     []Domain
	schemas     *log.Schemas
	upcasters   *log.Upcasters
	projections []readmodels.Projection
	// docs are the writer's and the reader's OpenAPI documents.
	docs map[string]*apispec.Document
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// New checks domains and returns their registry. It fails, saying which
// domain and what, when a domain is registered half-way: no name or a
// name taken; an aggregate type without a name, registered twice, or
// without any event schema; an event schema, upcaster, command route or
// projection naming an aggregate type that is not the domain's (a
// projection may also read the types of domains registered before it); an
// upcaster without the schemas it lifts between; two command routes or
// projections with one name.
func New(domains ...Domain) (*Registry, error) {
	r := &Registry{domains: domains, upcasters: log.NewUpcasters()}
	var eventFS []fs.FS
	owner := map[string]string{} // aggregate type -> domain
	domainNames := map[string]bool{}
	for _, d := range domains {
		if !namePattern.MatchString(d.Name) {
			return nil, fmt.Errorf("registry: domain name %q: lower-case letters, digits and dashes", d.Name)
		}
		if domainNames[d.Name] {
			return nil, fmt.Errorf("registry: domain %q is registered twice", d.Name)
		}
		domainNames[d.Name] = true
		if len(d.Aggregates) == 0 {
			return nil, fmt.Errorf("registry: domain %q has no aggregate type", d.Name)
		}
		for _, k := range d.Aggregates {
			t := k.TypeName()
			if !namePattern.MatchString(t) {
				return nil, fmt.Errorf("registry: domain %q: aggregate type name %q: lower-case letters, digits and dashes", d.Name, t)
			}
			if other, dup := owner[t]; dup {
				return nil, fmt.Errorf("registry: domain %q: aggregate type %q is domain %q's already", d.Name, t, other)
			}
			owner[t] = d.Name
		}
		if d.Events == nil {
			return nil, fmt.Errorf("registry: domain %q has no event schemas (Events)", d.Name)
		}
		eventFS = append(eventFS, d.Events)
	}
	schemas, err := log.LoadSchemas(eventFS...)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.schemas = schemas
	typesWithSchemas := map[string]bool{}
	for _, s := range schemas.List() {
		typesWithSchemas[s.AggregateType] = true
		if _, ok := owner[s.AggregateType]; !ok {
			return nil, fmt.Errorf("registry: there is an event schema of %s/%s v%d but no domain has aggregate type %q", s.AggregateType, s.EventType, s.Version, s.AggregateType)
		}
	}
	patterns := map[string]string{}
	queryPatterns := map[string]string{}
	projections := map[string]string{}
	processes := map[string]string{}
	known := map[string]bool{} // aggregate types of the domains so far
	for _, d := range domains {
		own := map[string]bool{}
		for _, k := range d.Aggregates {
			own[k.TypeName()], known[k.TypeName()] = true, true
			if !typesWithSchemas[k.TypeName()] {
				return nil, fmt.Errorf("registry: domain %q: aggregate type %q has no event schema in Events (events/%s/<EventType>.v<N>.json)", d.Name, k.TypeName(), k.TypeName())
			}
		}
		for _, s := range schemas.List() {
			if owner[s.AggregateType] != d.Name {
				continue
			}
			if !own[s.AggregateType] {
				return nil, fmt.Errorf("registry: domain %q: an event schema of another domain's aggregate type %q", d.Name, s.AggregateType)
			}
		}
		for _, u := range d.Upcasters {
			if owner[u.AggregateType] != d.Name {
				return nil, fmt.Errorf("registry: domain %q: upcaster of %s/%s: not an aggregate type of the domain", d.Name, u.AggregateType, u.EventType)
			}
			if u.Upcast == nil || !schemas.Has(u.AggregateType, u.EventType, u.From) || !schemas.Has(u.AggregateType, u.EventType, u.From+1) {
				return nil, fmt.Errorf("registry: domain %q: upcaster of %s/%s v%d: needs a function and the schemas of v%d and v%d", d.Name, u.AggregateType, u.EventType, u.From, u.From, u.From+1)
			}
			if err := register(r.upcasters, u); err != nil {
				return nil, fmt.Errorf("registry: domain %q: %w", d.Name, err)
			}
		}
		for _, c := range d.Commands {
			if !own[c.AggregateType] {
				return nil, fmt.Errorf("registry: domain %q: command route %q acts on aggregate type %q, not one of the domain's", d.Name, c.Pattern, c.AggregateType)
			}
			if other, dup := patterns[c.Pattern]; dup {
				return nil, fmt.Errorf("registry: domain %q: command route %q is domain %q's already", d.Name, c.Pattern, other)
			}
			patterns[c.Pattern] = d.Name
		}
		for _, q := range d.Queries {
			if other, dup := queryPatterns[q.Pattern]; dup {
				return nil, fmt.Errorf("registry: domain %q: query route %q is domain %q's already", d.Name, q.Pattern, other)
			}
			queryPatterns[q.Pattern] = d.Name
		}
		for _, p := range d.Processes {
			if !namePattern.MatchString(p.Name) || p.New == nil {
				return nil, fmt.Errorf("registry: domain %q: a process manager needs a name (lower-case letters, digits and dashes) and New", d.Name)
			}
			if other, dup := processes[p.Name]; dup {
				return nil, fmt.Errorf("registry: domain %q: process manager %q is domain %q's already", d.Name, p.Name, other)
			}
			processes[p.Name] = d.Name
		}
		for _, p := range d.Projections {
			if p == nil || !namePattern.MatchString(p.Name()) {
				return nil, fmt.Errorf("registry: domain %q: a projection without a valid name", d.Name)
			}
			if p.Name() == correlation.Name {
				return nil, fmt.Errorf("registry: domain %q: projection %q is the platform's", d.Name, p.Name())
			}
			if other, dup := projections[p.Name()]; dup {
				return nil, fmt.Errorf("registry: domain %q: projection %q is domain %q's already", d.Name, p.Name(), other)
			}
			projections[p.Name()] = d.Name
			if len(p.AggregateTypes()) == 0 {
				return nil, fmt.Errorf("registry: domain %q: projection %q reads no aggregate type", d.Name, p.Name())
			}
			for _, t := range p.AggregateTypes() {
				if !known[t] {
					return nil, fmt.Errorf("registry: domain %q: projection %q reads aggregate type %q, which no domain registered so far has", d.Name, p.Name(), t)
				}
			}
			r.projections = append(r.projections, p)
		}
	}
	r.projections = append(r.projections, correlation.Projection{Types: r.AggregateTypes()})
	if err := r.assembleDocuments(); err != nil {
		return nil, err
	}
	return r, nil
}

// assembleDocuments assembles the writer's and the reader's OpenAPI
// documents from the platform's parts, the domains' fragments and the
// event schemas, and checks that each domain route is documented.
func (r *Registry) assembleDocuments() error {
	events := r.currentEvents()
	r.docs = map[string]*apispec.Document{}
	for _, name := range []string{"writer", "reader"} {
		base, err := apispec.Base(name)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		parts := apispec.Parts{AggregateTypes: r.AggregateTypes(), Events: events}
		for _, d := range r.domains {
			routes := len(d.Commands)
			if name == "reader" {
				routes = len(d.Queries)
			}
			if routes == 0 {
				continue
			}
			if d.API == nil {
				return fmt.Errorf("registry: domain %q has %s routes but no API documents (API with %s.yaml)", d.Name, name, name)
			}
			frag, err := fs.ReadFile(d.API, name+".yaml")
			if err != nil {
				return fmt.Errorf("registry: domain %q has %s routes but no %s.yaml in API: %w", d.Name, name, name, err)
			}
			parts.Fragments = append(parts.Fragments, apispec.Fragment{Domain: d.Name, YAML: frag})
		}
		doc, err := apispec.Assemble(name, base, parts)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		r.docs[name] = doc
	}
	for _, d := range r.domains {
		for _, c := range d.Commands {
			if !documented(r.docs["writer"], c.Pattern) {
				return fmt.Errorf("registry: domain %q: command route %q is not in its writer.yaml", d.Name, c.Pattern)
			}
		}
		for _, q := range d.Queries {
			if !documented(r.docs["reader"], q.Pattern) {
				return fmt.Errorf("registry: domain %q: query route %q is not in its reader.yaml", d.Name, q.Pattern)
			}
		}
	}
	return nil
}

// documented tells whether doc has the operation of a ServeMux pattern
// ("METHOD /path").
func documented(doc *apispec.Document, pattern string) bool {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		return false
	}
	item := doc.OpenAPI().Paths.Value(path)
	return item != nil && item.GetOperation(method) != nil
}

// currentEvents returns the newest schema of every event type: the
// payloads the APIs answer with are upcast to it.
func (r *Registry) currentEvents() []apispec.EventSchema {
	var out []apispec.EventSchema
	for _, s := range r.schemas.List() { // by type, event type, version
		if n := len(out); n > 0 && out[n-1].AggregateType == s.AggregateType && out[n-1].EventType == s.EventType {
			out = out[:n-1]
		}
		out = append(out, apispec.EventSchema{AggregateType: s.AggregateType, EventType: s.EventType, Version: s.Version,
			Schema: r.schemas.Raw(s.AggregateType, s.EventType, s.Version)})
	}
	return out
}

// API returns the OpenAPI document of the API called name ("writer" or
// "reader"), assembled from the platform's part and the domains'; nil for
// another name.
func (r *Registry) API(name string) *apispec.Document { return r.docs[name] }

// register adds u to ups, turning a duplicate into an error.
func register(ups *log.Upcasters, u Upcaster) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New(fmt.Sprint(p))
		}
	}()
	ups.Register(u.AggregateType, u.EventType, u.From, u.Upcast)
	return nil
}

// Domains returns the registered domains' names.
func (r *Registry) Domains() []string {
	names := make([]string, len(r.domains))
	for i, d := range r.domains {
		names[i] = d.Name
	}
	return names
}

// AggregateTypes returns every domain's aggregate type names, in
// registration order: the relay forwards their events.
func (r *Registry) AggregateTypes() []string {
	var types []string
	for _, d := range r.domains {
		for _, k := range d.Aggregates {
			types = append(types, k.TypeName())
		}
	}
	return types
}

// Aggregates returns every domain's aggregate types, in registration
// order.
func (r *Registry) Aggregates() []aggregate.Kind {
	var kinds []aggregate.Kind
	for _, d := range r.domains {
		kinds = append(kinds, d.Aggregates...)
	}
	return kinds
}

// Schemas returns the JSON Schemas of every domain's events.
func (r *Registry) Schemas() *log.Schemas { return r.schemas }

// Upcasters returns every domain's upcasters.
func (r *Registry) Upcasters() *log.Upcasters { return r.upcasters }

// Projections returns every projection the projector can run: the
// domains', then the platform's correlation index over every aggregate
// type.
func (r *Registry) Projections() []readmodels.Projection { return slices.Clone(r.projections) }

// ProjectionNames returns the names of Projections, in order.
func (r *Registry) ProjectionNames() []string {
	names := make([]string, len(r.projections))
	for i, p := range r.projections {
		names[i] = p.Name()
	}
	return names
}

// Projection returns the projection called name, or nil.
func (r *Registry) Projection(name string) readmodels.Projection {
	for _, p := range r.projections {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Writer returns what the writer serves: every domain's aggregate types,
// command routes, event schemas and upcasters, and the OpenAPI document.
func (r *Registry) Writer() writer.App {
	app := writer.App{Aggregates: r.Aggregates(), Schemas: r.schemas, Upcasters: r.upcasters, Spec: r.docs["writer"].Handler()}
	for _, d := range r.domains {
		app.Routes = append(app.Routes, d.Commands...)
	}
	return app
}

// Reader returns the reader's routes of every domain's queries.
func (r *Registry) Reader() []reader.Route {
	var routes []reader.Route
	for _, d := range r.domains {
		routes = append(routes, d.Queries...)
	}
	return routes
}

// Processes returns every domain's process managers.
func (r *Registry) Processes() []Process {
	var ps []Process
	for _, d := range r.domains {
		ps = append(ps, d.Processes...)
	}
	return ps
}

// String lists the domains, for logs.
func (r *Registry) String() string { return strings.Join(r.Domains(), ",") }
