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
