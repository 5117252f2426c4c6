package main

import (
	"os"
	"regexp"
	"testing"
)

// TestREADMECommandCount keeps the README's "paas has N Dokku commands" in
// step with the number of commands `help` lists to an administrator, which
// dokku-ps.txtar counts through the real ssh (the line after "help-count").
func TestREADMECommandCount(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/script/dokku-ps.txtar")
	if err != nil {
		t.Fatal(err)
	}
	inReadme := regexp.MustCompile(`paas has (\d+) Dokku commands`).FindSubmatch(readme)
	inScript := regexp.MustCompile(`# help-count.*\n.*\nstdout '\^(\d+)\$'`).FindSubmatch(script)
	if inReadme == nil || inScript == nil {
		t.Fatalf("README (%q) or dokku-ps.txtar (%q) lacks the command count", inReadme, inScript)
	}
	if string(inReadme[1]) != string(inScript[1]) {
		t.Errorf("README.md says paas has %s Dokku commands, dokku-ps.txtar counts %s in help: update both to what help prints", inReadme[1], inScript[1])
	}
}
