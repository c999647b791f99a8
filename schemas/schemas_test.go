package schemas_test

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/tributary-es/tributary/schemas"
)

// A domain's share of the event schemas holds its aggregate types' folders
// and nothing else.
func TestEventsOfHoldsOnlyTheGivenTypes(t *testing.T) {
	sub := schemas.EventsOf("account")
	if err := fstest.TestFS(sub, "events/account/AccountOpened.v1.json"); err != nil {
		t.Fatal(err)
	}
	var files int
	err := fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := fs.Glob(schemas.Events, "events/account/*.json")
	if files != len(all) || files == 0 {
		t.Errorf("%d files under EventsOf(account), %d in events/account", files, len(all))
	}
	if _, err := fs.Stat(sub, "events/transfer/TransferRequested.v1.json"); err == nil {
		t.Error("another aggregate type's schema is visible")
	}
	if _, err := fs.ReadDir(sub, "events/transfer"); err == nil {
		t.Error("another aggregate type's folder is listed")
	}
}
