package output

import (
	"strings"
	"testing"
)

func TestLines(t *testing.T) {
	var b strings.Builder
	Step(&b, "Building %s", "myapp")
	Header(&b, "%s env vars", "myapp")
	Detail(&b, "100%% done")
	Warn(&b, "App %q does not exist", "x")
	want := "-----> Building myapp\n=====> myapp env vars\n       100% done\n !     App \"x\" does not exist\n"
	if b.String() != want {
		t.Fatalf("got\n%q\nwant\n%q", b.String(), want)
	}
}

func TestWantJSON(t *testing.T) {
	for format, want := range map[string]bool{"": false, "stdout": false, "json": true} {
		if got, err := WantJSON(format); err != nil || got != want {
			t.Errorf("WantJSON(%q) = %v, %v; want %v", format, got, err, want)
		}
	}
	if _, err := WantJSON("xml\x1b[31m"); err == nil || !strings.Contains(err.Error(), `unknown format "xml\x1b[31m"`) {
		t.Errorf("an unknown format: %v, want it named, its control characters escaped", err)
	}
	var b strings.Builder
	if err := JSON(&b, map[string]string{"url": "http://a/?x=1&y=<2>"}); err != nil || b.String() != `{"url":"http://a/?x=1&y=<2>"}`+"\n" {
		t.Errorf("JSON: %q %v", b.String(), err)
	}
}
