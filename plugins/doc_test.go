package plugins_test

import (
	"os"
	"strings"
	"testing"

	"paas/plugins"
)

// TestREADMEDocumentsTriggers keeps the README's trigger table in step with
// the trigger points: every one is listed with its arguments.
func TestREADMEDocumentsTriggers(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, tr := range plugins.Triggers {
		row := "| `" + tr.Name + "` | `" + strings.ReplaceAll(tr.Args, "|", `\|`) + "` |"
		if !strings.Contains(readme, row) {
			t.Errorf("README.md has no trigger row starting %q", row)
		}
	}
}
