package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// The converter that turns Kubernetes' OpenAPI v2 document and the Prometheus
// Operator's CRDs into the standalone, strict JSON schemas kubeconform reads
// offline: one file per kind, named as kubeconform's
// '{{ .ResourceKind }}{{ .KindSuffix }}.json' template expects
// (deployment-apps-v1.json, service-v1.json,
// servicemonitor-monitoring-v1.json), every $ref inlined, and
// additionalProperties:false on every object that lists its properties, so an
// unknown or misspelt field fails validation.

// schemaFileName is kubeconform's file name of a kind's schema.
func schemaFileName(group, version, kind string) string {
	suffix := "-" + strings.ToLower(version)
	if group != "" {
		suffix = "-" + strings.ToLower(strings.Split(group, ".")[0]) + "-" + strings.ToLower(version)
	}
	return strings.ToLower(kind) + suffix + ".json"
}

// writeKubernetesSchemas converts swagger (api/openapi-spec/swagger.json of
// k8s.io/kubernetes) into dir, one schema per kind that has a single
// group/version/kind; it returns how many it wrote.
func writeKubernetesSchemas(swagger []byte, dir string) (int, error) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(swagger, &doc); err != nil {
		return 0, fmt.Errorf("swagger.json: %w", err)
	}
	n := 0
	for name, def := range doc.Definitions {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) != 1 {
			continue // not a top-level kind, or a shared one such as DeleteOptions
		}
		gvk := gvks[0].(map[string]any)
		group, version, kind := gvk["group"].(string), gvk["version"].(string), gvk["kind"].(string)
		if _, ok := def["properties"].(map[string]any)["apiVersion"]; !ok {
			continue // a list or other kind objects are not written as
		}
		s := inline(def, doc.Definitions, map[string]bool{name: true})
		strict(s)
		apiVersion := version
		if group != "" {
			apiVersion = group + "/" + version
		}
		props := s["properties"].(map[string]any)
		props["apiVersion"] = map[string]any{"type": "string", "enum": []any{apiVersion}}
		props["kind"] = map[string]any{"type": "string", "enum": []any{kind}}
		if err := writeSchema(filepath.Join(dir, schemaFileName(group, version, kind)), s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// inline returns a copy of s with every "#/definitions/..." $ref replaced by
// the definition, recursively; a definition that refers to itself (the CRD
// JSONSchemaProps) is left open ({}) where it recurs.
func inline(s map[string]any, defs map[string]map[string]any, seen map[string]bool) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/definitions/")
		if seen[name] {
			return map[string]any{}
		}
		seen[name] = true
		out := inline(defs[name], defs, seen)
		delete(seen, name)
		if d, ok := s["description"]; ok {
			out["description"] = d
		}
		return out
	}
	out := make(map[string]any, len(s))
	for k, v := range s {
		out[k] = inlineValue(v, defs, seen)
	}
	// Kubernetes' special string formats also take numbers in manifests.
	switch out["format"] {
	case "int-or-string":
		delete(out, "type")
		delete(out, "format")
		out["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
	case "quantity":
		delete(out, "type")
		delete(out, "format")
		out["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}
	}
	return out
}

func inlineValue(v any, defs map[string]map[string]any, seen map[string]bool) any {
	switch v := v.(type) {
	case map[string]any:
		return inline(v, defs, seen)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = inlineValue(e, defs, seen)
		}
		return out
	}
	return v
}

// strict closes every object schema that lists its properties and says
// nothing of others, unless the CRD marks it as keeping unknown fields.
func strict(v any) {
	switch v := v.(type) {
	case map[string]any:
		_, hasProps := v["properties"]
		_, hasAdditional := v["additionalProperties"]
		preserve, _ := v["x-kubernetes-preserve-unknown-fields"].(bool)
		if hasProps && !hasAdditional && !preserve {
			v["additionalProperties"] = false
		}
		for _, e := range v {
			strict(e)
		}
	case []any:
		for _, e := range v {
			strict(e)
		}
	}
}

// writeCRDSchemas converts one CustomResourceDefinition YAML file into a
// schema per served version.
func writeCRDSchemas(crdYAML []byte, dir string) (int, error) {
	var crd struct {
		Spec struct {
			Group string `yaml:"group"`
			Names struct {
				Kind string `yaml:"kind"`
			} `yaml:"names"`
			Versions []struct {
				Name   string `yaml:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
				} `yaml:"schema"`
			} `yaml:"versions"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(crdYAML, &crd); err != nil {
		return 0, err
	}
	n := 0
	for _, v := range crd.Spec.Versions {
		s := v.Schema.OpenAPIV3Schema
		if s == nil {
			continue
		}
		strict(s)
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			return n, fmt.Errorf("CRD %s %s has no properties", crd.Spec.Names.Kind, v.Name)
		}
		props["apiVersion"] = map[string]any{"type": "string", "enum": []any{crd.Spec.Group + "/" + v.Name}}
		props["kind"] = map[string]any{"type": "string", "enum": []any{crd.Spec.Names.Kind}}
		if err := writeSchema(filepath.Join(dir, schemaFileName(crd.Spec.Group, v.Name, crd.Spec.Names.Kind)), s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func writeSchema(path string, s map[string]any) error {
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
