package helm

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/tributary-es/tributary/internal/domains"
)

// The chart's values schema offers exactly the projections this build's
// registry of domains has, in its order: a domain added or removed without
// the schema following fails here.
func TestValuesSchemaListsTheRegisteredProjections(t *testing.T) {
	raw, err := os.ReadFile("tributary/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			Projector struct {
				Properties struct {
					Projections struct {
						Items struct {
							Enum []string `json:"enum"`
						} `json:"items"`
					} `json:"projections"`
				} `json:"properties"`
			} `json:"projector"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	got := schema.Properties.Projector.Properties.Projections.Items.Enum
	want := domains.Must().ProjectionNames()
	if !slices.Equal(got, want) {
		t.Fatalf("values.schema.json projector.projections allows %q; the registry has %q: update the enum", got, want)
	}
}
