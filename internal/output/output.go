// Package output writes the lines a user reads in a session, in Dokku's
// shape: a step of work, a section header, an indented detail and a
// warning or error. Every command, the push pipeline and the plugins
// print through it, so the prefixes are typed once.
package output

import (
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
