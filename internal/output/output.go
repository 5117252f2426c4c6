// Package output writes the lines a user reads in a session, in Dokku's
// shape: a step of work, a section header, an indented detail and a
// warning or error. Every command, the push pipeline and the plugins
// print through it, so the prefixes are typed once.
package output

import (
	"encoding/json"
	"fmt"
	"io"
)

// The prefixes of Dokku's output (dokku_log_info1, info2, verbose, warn).
const (
	StepPrefix    = "-----> "
	HeaderPrefix  = "=====> "
	DetailPrefix  = "       "
	WarningPrefix = " !     "
)

// Step writes a step of work: "-----> Building myapp".
func Step(w io.Writer, format string, args ...any) { line(w, StepPrefix, format, args) }

// Header writes the title of a report: "=====> myapp env vars".
func Header(w io.Writer, format string, args ...any) { line(w, HeaderPrefix, format, args) }

// Detail writes a line under a step, indented as Dokku does.
func Detail(w io.Writer, format string, args ...any) { line(w, DetailPrefix, format, args) }

// Warn writes a warning or an error the user must read: " !     ...".
func Warn(w io.Writer, format string, args ...any) { line(w, WarningPrefix, format, args) }

// line writes one line and flushes a writer that buffers (an SSH session's
// or an HTTP response's), so the user sees progress as it happens.
func line(w io.Writer, prefix, format string, args []any) {
	fmt.Fprintf(w, prefix+format+"\n", args...)
	Flush(w)
}

// Flush flushes w if it buffers.
func Flush(w io.Writer) {
	switch f := w.(type) {
	case interface{ Flush() error }:
		_ = f.Flush()
	case interface{ Flush() }:
		f.Flush()
	}
}

// WantJSON reads a command's --format flag: "json" is true, "" and
// "stdout" (Dokku's default) false, anything else an error.
func WantJSON(format string) (bool, error) {
	switch format {
	case "", "stdout":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, fmt.Errorf("unknown format %q: use json or stdout", format)
	}
}

// JSON writes v as one line of JSON, with <, > and & as they are (the
// output is read by scripts, not embedded in HTML).
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
